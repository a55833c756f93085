"""Planner speed: `plan` for large device counts, with the trace and the ranking timed apart.

    python benchmarks/bench_plan.py [MODEL ...] [--devices 12288] [--hardware h100-sxm] [--seq S --batch B]

Prints, per model: the trace time (one fake-tensor trace of the whole model at the
global batch), the planning time (profile + every layout's step time + memory checks
in rank order, and the layouts shown re-timed), of which the traces of one device's
micro-batch the planner sizes and times the layouts it shows from (``--scaled``: none,
every figure from the global trace scaled, as the planner did before those traces),
and the end-to-end time, with the number of layouts and the winner.
Issue 12 asks for GPT-3 175B on 12,288 devices planned (not traced) in well under 5 s,
with the TP × CP × PP (uneven, VP) × DP search; the last line is Llama 3.1 405B on
16,384 H100 at 8K context and a 2,048-sequence batch, whose layout should be pipeline-
and tensor-parallel (TP 8, PP 16 style), not ZeRO-3 data parallelism.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["gpt3-175b", "llama-3.1-405b", "llama-2-70b"])
    ap.add_argument("--devices", type=int, default=12288)
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's, at most 4096)")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: about 4M tokens)")
    ap.add_argument("--no-405b", action="store_true", help="skip the closing Llama 3.1 405B × 16,384 line")
    ap.add_argument("--scaled", action="store_true",
                    help="rank and size every layout from the global trace scaled (no micro-batch traces)")
    args = ap.parse_args(argv)

    from mlfootprint.verbs.common import resolve_model as model_spec
    from mlfootprint.models.hf import default_seq
    from mlfootprint.analysis.predict.efficiency import efficiency_for
    from mlfootprint.analysis.predict.prediction import resolve_device
    from mlfootprint.analysis.predict.planner import plan
    from mlfootprint.workload import Workload
    from mlfootprint.trace.run import trace
    from mlfootprint.verbs.runnable import micro_batch_workload

    dev = resolve_device(args.hardware)
    tokens = efficiency_for(dev)["plan_batch_tokens"]
    cases = [(name, args.devices, args.seq, args.batch) for name in args.models]
    if not args.no_405b:
        cases.append(("llama-3.1-405b", 16384, 8192, 2048))
    for name, devices, seq, batch in cases:
        t0 = time.perf_counter()
        spec = model_spec(name)
        seq = seq or default_seq(spec)
        batch = batch or math.ceil(math.ceil(tokens / seq) / devices) * devices
        wl = Workload(batch=batch, seq=seq, mode="train", precision=args.precision)
        tr = trace(spec, wl, checkpoint_early_stop=False)  # as plan traces
        t1 = time.perf_counter()
        micro = {"n": 0, "s": 0.0}

        def trace_at(mb: int, mixed_weights: str, spec: Any = spec, wl: Any = wl) -> Any:
            start = time.perf_counter()
            one = micro_batch_workload(wl, mb)
            out = trace(spec, one.with_changes(given=one.given, mixed_weights=mixed_weights),
                        checkpoint_early_stop=False)
            micro["n"] += 1
            micro["s"] += time.perf_counter() - start
            return out

        res = plan(spec, wl, tr, dev, devices, trace_at=None if args.scaled else trace_at)
        t2 = time.perf_counter()
        print(f"{name:<16} {devices:>6} × {dev.id}: trace {t1 - t0:5.2f} s, plan {t2 - t1:5.2f} s (of which "
              f"{micro['n']} micro-batch traces {micro['s']:5.2f} s), total {t2 - t0:5.2f} s; {res.considered} "
              f"layouts ranked, {res.memory_checked} memory checks; batch {batch} × {seq}", flush=True)
        print(f"    {res.assumptions[1]}", flush=True)
        print(f"    {res.explanation}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
