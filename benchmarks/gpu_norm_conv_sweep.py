"""Kernel times of batch norm, convolutions by memory layout, and row-wise kernels over odd widths, on a CUDA GPU.

    python benchmarks/gpu_norm_conv_sweep.py --out norm_conv.json      # on a CUDA machine (about 1 minute)

A profile of a ResNet-18-like training step on an H200 (results/h200-2026-12-04/gpu_kernel_profile.json) spent
25 ms of 45 in batch norm under bf16 autocast (NCHW), 14–16× what its bytes take at the memory bandwidth, and
7 ms in cuDNN's NCHW↔NHWC transposes around the convolutions; GPT-2's elementwise kernels over its 50,257-wide
logits ran unvectorized. This script measures those kernel families one by one, so that a step model can rate
them (the measurements are the calibration; the profiled steps stay the check):

- **batch_norm**: ``F.batch_norm`` in training mode, forward and forward + backward, for ResNet stage shapes and
  more (channels 64–1024 at 7²–56² per image, batch 256): bf16 input with fp32 weights under autocast in NCHW
  and channels_last, and fp32 in NCHW; bytes are the input read twice and the output written once (forward).
- **conv2d**: 3×3 and 1×1 convolutions of the ResNet stages under bf16 autocast, forward and forward + backward,
  NCHW against channels_last (the difference is the layout transposes cuDNN adds for NCHW).
- **rowwise**: log_softmax, its backward, and a cast over (16384 × V) with V 50,257 (odd) and 50,304 (a multiple
  of 64), fp32 and bf16.

Each point is the median of CUDA-event timings over about ``--window-s`` seconds of back-to-back calls.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_sweep import Nvml, environment, time_blocks  # noqa: E402  (a sibling script)


def timed(fn: Callable[[], Any], window_s: float) -> float:
    """Median seconds per call over about ``window_s`` (5 timed blocks of back-to-back calls)."""
    return time_blocks(fn, window_s, blocks=5)


def batch_norm_rows(window: float) -> list[dict[str, Any]]:
    rows = []
    shapes = [(256, 64, 56), (256, 128, 28), (256, 256, 14), (256, 512, 7), (256, 64, 112), (256, 256, 56),
              (256, 512, 28), (256, 1024, 14), (64, 64, 56), (64, 512, 7)]
    for n, c, hw in shapes:
        for layout, dtype in (("nchw", torch.bfloat16), ("channels_last", torch.bfloat16), ("nchw", torch.float32)):
            x = torch.randn(n, c, hw, hw, device="cuda")
            if layout == "channels_last":
                x = x.to(memory_format=torch.channels_last)
            x = x.to(dtype).requires_grad_(True)
            w = torch.ones(c, device="cuda", requires_grad=True)
            b = torch.zeros(c, device="cuda", requires_grad=True)
            rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
            g = torch.randn_like(x)

            def fwd() -> torch.Tensor:
                return F.batch_norm(x, rm, rv, w, b, training=True)

            def train() -> None:
                fwd().backward(g)

            tf, tt = timed(fwd, window), timed(train, window)
            nbytes = x.numel() * x.element_size()
            rows.append({"n": n, "c": c, "hw": hw, "layout": layout, "dtype": str(dtype).replace("torch.", ""),
                         "bytes_input": nbytes, "forward_s": tf, "train_s": tt,
                         "forward_bytes_per_s": 3 * nbytes / tf, "backward_bytes_per_s": 5 * nbytes / (tt - tf)})
    return rows


def conv_rows(window: float) -> list[dict[str, Any]]:
    rows = []
    # (batch, in channels, out channels, size, kernel, stride): ResNet-18/50 stage convolutions at batch 256
    shapes = [(256, 64, 64, 56, 3, 1), (256, 128, 128, 28, 3, 1), (256, 256, 256, 14, 3, 1), (256, 512, 512, 7, 3, 1),
              (256, 64, 256, 56, 1, 1), (256, 256, 64, 56, 1, 1), (256, 3, 64, 224, 7, 2)]
    for n, cin, cout, hw, k, stride in shapes:
        for layout in ("nchw", "channels_last"):
            x = torch.randn(n, cin, hw, hw, device="cuda")
            w = torch.randn(cout, cin, k, k, device="cuda") * 0.05
            if layout == "channels_last":
                x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
            x.requires_grad_(True)
            w.requires_grad_(True)

            def fwd() -> torch.Tensor:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return F.conv2d(x, w, stride=stride, padding=k // 2)

            out = fwd()
            g = torch.randn_like(out)

            def train() -> None:
                fwd().backward(g)

            tf, tt = timed(fwd, window), timed(train, window)
            ho = out.shape[-1]
            flops = 2 * n * cout * ho * ho * cin * k * k
            rows.append({"n": n, "cin": cin, "cout": cout, "hw": hw, "k": k, "stride": stride, "layout": layout,
                         "forward_s": tf, "train_s": tt, "forward_flops_per_s": flops / tf,
                         "backward_flops_per_s": 2 * flops / (tt - tf)})
    return rows


def rowwise_rows(window: float) -> list[dict[str, Any]]:
    rows = []
    for v in (50257, 50304):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(16384, v, device="cuda", dtype=dtype)
            nbytes = x.numel() * x.element_size()
            y = torch.log_softmax(x, dim=-1)
            g = torch.randn_like(y)
            cases = {"log_softmax": (lambda: torch.log_softmax(x, dim=-1), 2 * nbytes),
                     "log_softmax_backward": (lambda: torch._log_softmax_backward_data(g, y, -1, dtype), 3 * nbytes),
                     "cast": (lambda: x.to(torch.float32 if dtype == torch.bfloat16 else torch.bfloat16),
                              nbytes + nbytes * (2 if dtype == torch.bfloat16 else 0.5)),
                     "mul_scalar": (lambda: x * 0.5, 2 * nbytes)}
            for name, (fn, moved) in cases.items():
                t = timed(fn, window)
                rows.append({"op": name, "width": v, "dtype": str(dtype).replace("torch.", ""), "seconds": t,
                             "bytes": moved, "bytes_per_s": moved / t})
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--window-s", type=float, default=0.15)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_norm_conv_sweep: needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = False  # the default, as the profiled steps ran
    result: dict[str, Any] = {"environment": {**environment(Nvml()), "cudnn": torch.backends.cudnn.version()},
                              "window_s": args.window_s, "errors": []}
    out = Path(args.out)
    for name, fn in (("batch_norm", batch_norm_rows), ("conv2d", conv_rows), ("rowwise", rowwise_rows)):
        try:
            result[name] = fn(args.window_s)
        except Exception as exc:  # noqa: BLE001 - record and go on to the next family
            result["errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:400])
        out.write_text(json.dumps(result, indent=1) + "\n")
        torch.cuda.empty_cache()
        print(f"{name}: {len(result.get(name, []))} rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
