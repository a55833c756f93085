"""Sustained training rate of PyTorch's fused causal attention kernels by sequence length, on a CUDA GPU.

    python benchmarks/attention_sweep.py --out attention.json     # on a CUDA machine (about 1 minute)

``sdpa_backend_probe.py`` times each SDPA backend for ten calls from a cool GPU; a training step holds the GPU at
its power cap. This script first runs a large GEMM for ``--soak-s`` seconds (``gemm_sweep.soak``), then times
each backend (cuDNN attention, FlashAttention-2) on 16-bit causal attention with 16 heads of 128
(``--head-dim``: hidden 2,048 in heads of that size) and at least 16k tokens per call (batch × sequence, as FlashAttention-3's figures), sequences 2k–32k, each for about
``--window-s`` seconds of back-to-back calls: the forward alone (no grad) and forward + backward. The backward's
rate comes from their difference. FLOPs follow the FlashAttention papers: forward 4·b·h·s²·d / 2 for causal
attention, backward 2.5 × forward (its recomputed Q·Kᵀ included). NVML's mean SM clock and power are kept with
each point. The rows are the [sequence, forward, backward] points of ``analysis/predict/data/attention.toml``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_sweep import Nvml, Sampler, environment, soak, time_blocks  # noqa: E402  (a sibling script)


def measure_seq(seq: int, heads: int, dim: int, batch: int, window_s: float, sampler: Sampler,
                result: dict[str, Any]) -> None:
    """Forward and forward + backward of each backend at one sequence length, appended to ``result``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev = torch.device("cuda")
    q, k, v = (torch.randn(batch, heads, seq, dim, device=dev, dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    grad = torch.randn(batch, heads, seq, dim, device=dev, dtype=torch.bfloat16)
    fwd_flops = 4 * batch * heads * seq * seq * dim / 2

    def fwd() -> None:
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def train() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)

    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                t0 = time.perf_counter()
                tf = time_blocks(fwd, window_s, min_calls=3)
                t1 = time.perf_counter()
                tt = time_blocks(train, window_s, min_calls=3)
                t2 = time.perf_counter()
            row = {"backend": name, "seq": seq, "batch": batch, "forward_s": tf, "train_s": tt,
                   "forward_flops_per_s": fwd_flops / tf, "backward_flops_per_s": 2.5 * fwd_flops / (tt - tf),
                   "train_flops_per_s": 3.5 * fwd_flops / tt,
                   "forward_nvml": sampler.window(t0, t1), "train_nvml": sampler.window(t1, t2)}
            print(f"{name} {seq}: forward {row['forward_flops_per_s'] / 1e12:.0f}, backward "
                  f"{row['backward_flops_per_s'] / 1e12:.0f}, train {row['train_flops_per_s'] / 1e12:.0f} TFLOP/s "
                  f"{row['train_nvml']}", flush=True)
            result["rows"].append(row)
        except Exception as exc:  # noqa: BLE001 - a backend this build or shape lacks
            result["errors"].append(f"{name} {seq}: {type(exc).__name__}: {exc}"[:300])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--soak-s", type=float, default=20.0)
    ap.add_argument("--window-s", type=float, default=0.6)
    ap.add_argument("--seqs", default="2048,4096,8192,16384,32768")
    ap.add_argument("--head-dim", type=int, default=128, help="head dimension (heads × head dim = 2,048)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("attention_sweep: needs a CUDA GPU", file=sys.stderr)
        return 2
    nvml = Nvml()
    sampler = Sampler(nvml)
    dev = torch.device("cuda")
    dim, min_tokens = args.head_dim, 16384
    heads = max(1, 2048 // dim)  # hidden 2,048, as FlashAttention-3's figures
    result: dict[str, Any] = {"environment": {**environment(nvml), "cudnn": torch.backends.cudnn.version()},
                              "heads": heads, "head_dim": dim, "window_s": args.window_s, "soak": [], "rows": [],
                              "errors": []}
    out = Path(args.out)
    result["soak"] = soak(dev, 8192, args.soak_s, sampler)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for seq in (int(s) for s in args.seqs.split(",")):
        measure_seq(seq, heads, dim, max(1, min_tokens // seq), args.window_s, sampler, result)
        out.write_text(json.dumps(result, indent=1) + "\n")
        torch.cuda.empty_cache()
    sampler.stop.set()
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
