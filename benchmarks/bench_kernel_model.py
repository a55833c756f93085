"""What kernel fusion and GEMM efficiency by size do to a prediction, against eager in the same run.

    python benchmarks/bench_kernel_model.py                       # opt-1.3b, train, seq 2048, batch 64, 8 × A100
    python benchmarks/bench_kernel_model.py --model gpt2 --hardware h100-sxm --batch 16 --seq 1024 --devices 1

Prints, from one trace, the step under each --fusion stack (none is the baseline: every operator its own
kernel): step time, the memory-bound and overhead parts, operators and bytes fused away; then the FLOP-weighted
GEMM efficiency by size at micro-batches 1, 2, 4, … of the same layout (smaller GEMMs, lower efficiency), next
to the flat factor it replaces (--efficiency matmul=0.75).
"""
from __future__ import annotations

import argparse
import dataclasses

from mlfootprint.analysis.predict.prediction import predict_step
from mlfootprint.analysis.predict.shape import parallel_from
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.workload import Workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="opt-1.3b")
    ap.add_argument("--hardware", default="a100-80gb")
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=2048)
    args = ap.parse_args()
    spec = resolve(args.model)
    wl = Workload(batch=args.batch, seq=args.seq, mode="train", precision="bf16-mixed", hardware=args.hardware,
                  devices=args.devices)
    tr = trace(spec, wl, checkpoint_early_stop=False)
    print(f"{args.model}, train, batch {args.batch} × seq {args.seq}, bf16-mixed, {args.devices} × {args.hardware}")
    print(f"{'fusion':<10}{'step s':>9}{'memory s':>10}{'overhead s':>12}{'MFU':>7}{'ops fused away':>16}"
          f"{'GB fused away':>15}")
    base = None
    for mode in ("none", "fused", "compiled"):
        p = predict_step(spec, dataclasses.replace(wl, fusion=mode), tr, args.hardware)
        base = base or p.step_s
        f = p.fusion
        print(f"{mode:<10}{p.step_s:>9.4f}{p.breakdown['memory_s']:>10.4f}{p.breakdown['overhead_s']:>12.4f}"
              f"{p.mfu:>7.1%}{f.ops_fused_away:>16,}{f.bytes_fused_away / 1e9:>15.1f}"
              + ("" if mode == "none" else f"   ({p.step_s / base - 1:+.1%} vs eager)"))
    flat = predict_step(spec, wl, tr, args.hardware, efficiency="matmul=0.75")
    print(f"\nflat matmul factor 0.75 (the old default): step {flat.step_s:.4f} s")
    layout = parallel_from(wl)
    mb = 1
    while mb <= layout.micro_batch:
        p = predict_step(spec, wl, tr, args.hardware, layout=dataclasses.replace(layout, micro_batch=mb))
        print(f"micro-batch {mb:>3}: GEMM efficiency by size {p.gemm_efficiency:.3f}, step {p.step_s:.4f} s")
        mb *= 2


if __name__ == "__main__":
    main()
