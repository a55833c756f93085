"""Which kernel PyTorch's SDPA runs on this GPU by default, and each backend's causal training rate.

    python benchmarks/sdpa_backend_probe.py --out sdpa.json      # on a CUDA machine (about 20 s)

For 16-bit causal attention (batch × sequence = 16k tokens, 16 heads of 128, as FlashAttention-3's
figures), it records the CUDA kernels that ``F.scaled_dot_product_attention`` launches with no backend chosen
(``torch.profiler``), then times forward and forward + backward under each backend that runs here
(``torch.nn.attention.sdpa_kernel``: flash, cuDNN, memory-efficient) with CUDA events. FLOPs follow the
FlashAttention papers' convention for causal attention: forward 4·b·h·s²·d / 2, backward 2.5 × forward.
The figures are what ``--attention flash2`` and the cuDNN default are rated against (attention.toml).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
from typing import Any

import torch
import torch.nn.functional as F


def _time(fn: Any, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def default_kernels(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()
        torch.cuda.synchronize()
    names = sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})
    return [n for n in names if any(w in n.lower() for w in ("flash", "cudnn", "fmha", "attention", "sdpa", "mem_eff",
                                                             "cutlass", "sm90"))][:20]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("sdpa_backend_probe: needs a CUDA GPU", file=sys.stderr)
        return 2
    from torch.nn.attention import SDPBackend, sdpa_kernel

    heads, dim, tokens = 16, 128, 16384
    env = {"date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version()}
    result: dict[str, Any] = {"environment": env, "rows": []}
    for seq in (2048, 4096, 8192):
        batch = tokens // seq
        q, k, v = (torch.randn(batch, heads, seq, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        fwd_flops = 4 * batch * heads * seq * seq * dim / 2
        row: dict[str, Any] = {"seq": seq, "batch": batch, "heads": heads, "head_dim": dim,
                               "default_kernels": default_kernels(q, k, v), "backends": {}}
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    def fwd() -> None:
                        with torch.no_grad():
                            F.scaled_dot_product_attention(q, k, v, is_causal=True)

                    def train() -> None:
                        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

                    tf, tt = _time(fwd), _time(train)
                row["backends"][name] = {"forward_s": tf, "train_s": tt,
                                         "forward_tflops": fwd_flops / tf / 1e12,
                                         "train_tflops": 3.5 * fwd_flops / tt / 1e12}
            except Exception as exc:  # noqa: BLE001 - a backend this build or shape lacks
                row["backends"][name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
