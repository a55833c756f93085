"""Host time per call of eager PyTorch operators on a CUDA machine: what a host-bound step pays per operator.

    python benchmarks/host_op_cost.py --out host.json       # on a CUDA machine (about 30 s); --device cpu: a smoke test

Small models on a big GPU are host-bound: the GPU idled 76% of a small GPT's training step on an H200
(results/h200-2026-12-04/gpu_kernel_profile.json), and against their measured steps the small reality-test models
spent 11–35 µs of host time per dispatched aten operator (census_reality-*.json). The step model charges a flat
5 µs per kernel instead. This script measures the host side one family at a time: each call on tiny CUDA tensors
(its kernel takes a few µs, so the host issues slower than the GPU runs), ``--calls`` calls back to back, the
wall time per call with one synchronization at the end. Families: a view, elementwise ops, cuBLAS products,
cuDNN convolution and batch norm, layer norm, SDPA, cross-entropy, an ``nn.Linear`` module call (the module
overhead), a linear layer under autocast (its casts), autograd's backward per graph node, and foreach AdamW per
parameter. With the operator census of a step, these give a host-time estimate to hold against the device time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


def per_call(fn: Callable[[], Any], calls: int, dev: torch.device, repeats: int = 5) -> float:
    """Median over ``repeats`` of the wall seconds per call of ``calls`` back-to-back calls (synchronized once)."""
    for _ in range(20):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / calls)
    return statistics.median(out)


def families(dev: torch.device) -> dict[str, tuple[Callable[[], Any], int, str]]:
    """name → (one call, aten operators it dispatches as counted below, what it is)."""
    x, y = torch.randn(64, 64, device=dev), torch.randn(64, 64, device=dev)
    w, b = torch.randn(64, 64, device=dev), torch.randn(64, device=dev)
    img = torch.randn(2, 8, 8, 8, device=dev)
    cw = torch.randn(8, 8, 3, 3, device=dev)
    bnw, bnb = torch.ones(8, device=dev), torch.zeros(8, device=dev)
    rm, rv = torch.zeros(8, device=dev), torch.ones(8, device=dev)
    q = torch.randn(2, 4, 16, 16, device=dev)
    logits, target = torch.randn(16, 100, device=dev), torch.randint(0, 100, (16,), device=dev)
    lin = nn.Linear(64, 64).to(dev)
    xa = torch.randn(64, 64, device=dev)
    leaf = torch.randn(64, device=dev, requires_grad=True)

    def backward_chain() -> None:  # 32 adds: 32 graph nodes (AddBackward0) plus the sum's
        h = leaf
        for _ in range(32):
            h = h + 1.0
        h.sum().backward()

    def autocast_linear() -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            return F.linear(xa, w, b)

    params = [torch.randn(64, device=dev, requires_grad=True) for _ in range(64)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-3, foreach=dev.type == "cuda")

    return {
        "view": (lambda: x.view(-1), 1, "Tensor.view (no kernel)"),
        "add": (lambda: x + y, 1, "x + y"),
        "add_": (lambda: x.add_(1.0), 1, "x.add_(1.0), in place"),
        "mul_scalar": (lambda: x * 0.5, 1, "x * 0.5"),
        "mm": (lambda: x @ y, 1, "64×64 @ 64×64 (cuBLAS)"),
        "linear": (lambda: F.linear(x, w, b), 2, "F.linear with bias (t + addmm)"),
        "linear_module": (lambda: lin(x), 2, "an nn.Linear module call (module __call__ overhead included)"),
        "linear_autocast": (autocast_linear, 5, "F.linear under bf16 autocast (three casts + t + addmm)"),
        "conv2d": (lambda: F.conv2d(img, cw, padding=1), 1, "3×3 convolution on 2×8×8×8 (cuDNN)"),
        "batch_norm": (lambda: F.batch_norm(img, rm, rv, bnw, bnb, training=True), 1, "training-mode batch norm"),
        "layer_norm": (lambda: F.layer_norm(x, (64,)), 1, "layer norm"),
        "sdpa": (lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True), 1, "causal SDPA on 2×4×16×16"),
        "cross_entropy": (lambda: F.cross_entropy(logits, target), 2, "cross-entropy (log_softmax + nll_loss)"),
        "backward_per_node": (backward_chain, 33, "backward of 32 chained adds and a sum, per graph node"),
        "adamw_foreach_per_param": (lambda: opt.step(), 64, "AdamW.step over 64 parameters, per parameter"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("host_op_cost: no CUDA GPU here (--device cpu for a smoke test)", file=sys.stderr)
        return 2
    env: dict[str, Any] = {"torch": torch.__version__, "python": sys.version.split()[0], "device": str(dev)}
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
    try:
        import platform

        env["cpu"] = platform.processor() or platform.machine()
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            env["cpu"], env["cpus"] = names[0], len(names)
    except OSError:
        pass
    rows = {}
    for name, (fn, ops, what) in families(dev).items():
        calls = max(20, args.calls // (ops if ops > 8 else 1))
        t = per_call(fn, calls, dev)
        rows[name] = {"what": what, "seconds_per_call": t, "aten_ops": ops, "seconds_per_op": t / ops}
        print(f"{name:26s} {t * 1e6:8.2f} µs per call, {t / ops * 1e6:7.2f} per op", flush=True)
    Path(args.out).write_text(json.dumps({"environment": env, "calls": args.calls, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
