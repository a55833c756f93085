"""Planner speed: `plan` for large device counts, with the trace and the ranking timed apart.

    python benchmarks/bench_plan.py [MODEL ...] [--devices 12288] [--hardware h100-sxm]

Prints, per model: the trace time (one fake-tensor trace of the whole model at the
global batch), the planning time (profile + every layout's step time + memory checks
in rank order) and the end-to-end time, with the number of layouts and the winner.
The issue asks for N = 12,288 in under 10 s.
"""
from __future__ import annotations

import argparse
import math
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["gpt3-175b", "llama-3.1-405b", "llama-2-70b"])
    ap.add_argument("--devices", type=int, default=12288)
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--precision", default="bf16-mixed")
    args = ap.parse_args(argv)

    from mlfootprint.verbs.common import resolve_model as model_spec
    from mlfootprint.models.hf import default_seq
    from tests.helpers import traced_for_prediction
    from mlfootprint.analysis.predict.efficiency import efficiency_for
    from mlfootprint.analysis.predict.prediction import resolve_device
    from mlfootprint.analysis.predict.planner import plan
    from mlfootprint.workload import Workload

    dev = resolve_device(args.hardware)
    tokens = efficiency_for(dev)["plan_batch_tokens"]
    for name in args.models:
        t0 = time.perf_counter()
        spec = model_spec(name)
        seq = default_seq(spec)
        batch = math.ceil(math.ceil(tokens / seq) / args.devices) * args.devices
        wl = Workload(batch=batch, seq=seq, mode="train", precision=args.precision)
        spec, wl, tr = traced_for_prediction(spec, wl)
        t1 = time.perf_counter()
        res = plan(spec, wl, tr, dev, args.devices)
        t2 = time.perf_counter()
        print(f"{name:<16} {args.devices:>6} × {dev.id}: trace {t1 - t0:5.2f} s, plan {t2 - t1:5.2f} s, "
              f"total {t2 - t0:5.2f} s; {res.considered} layouts, {res.memory_checked} memory checks; "
              f"batch {batch} × {seq}", flush=True)
        print(f"    {res.explanation}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
