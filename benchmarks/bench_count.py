"""Speed of the trace behind `count`, against PyTorch's FlopCounterMode in the same run.

    python benchmarks/bench_count.py            # llama-2-70b, train, batch 1, seq 4096

Prints:
  1. `mlfootprint count llama-2-70b --mode train --batch 1 --seq 4096` as a user runs it:
     wall seconds and peak RSS of the process (targets: < 15 s, < 3 GB on 2 cores).
  2. In one process, on the same fake-tensor model: FlopCounterMode (forward + backward) and
     mlfootprint's trace (forward + backward, then + optimizer step), best of N, and the ratio
     (target: trace / FlopCounterMode ≤ 2.0 for forward + backward).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time


def cli_run(model: str, seq: int) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlfootprint", "count", model, "--mode", "train", "--batch", "1",
                           "--seq", str(seq), "--format", "json", "-o", os.devnull], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(proc.stderr)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    return wall, rss


def in_process(model: str, seq: int, repeats: int) -> dict[str, float]:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from mlfootprint.models import resolve
    from mlfootprint.trace.mode import RecordingMode
    from mlfootprint.models.build import build
    from mlfootprint.workload import Workload

    wl = Workload(mode="train", batch=1, seq=seq)
    spec = resolve(model)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        built = build(spec, wl)
        m = built.module
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], foreach=False)

    def step(ctx_factory, with_opt=False):
        with fake:
            args, kwargs = built.make_inputs()
            with ctx_factory():
                loss = built.loss(m(*args, **kwargs))
                loss.backward()
                if with_opt:
                    opt.step()
        for p in m.parameters():
            p.grad = None

    @contextlib.contextmanager
    def ours():
        params = {p.untyped_storage()._cdata for p in m.parameters()}
        rec = RecordingMode(params)
        with rec.attributing(m), rec:
            yield

    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    baseline = best(lambda: step(lambda: FlopCounterMode(display=False)))
    trace_fb = best(lambda: step(ours))
    trace_full = best(lambda: step(ours, with_opt=True))
    return {"flopcounter_s": baseline, "trace_fwd_bwd_s": trace_fb, "trace_with_optimizer_s": trace_full}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-2-70b")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    wall, rss = cli_run(a.model, a.seq)
    print(f"cli: mlfootprint count {a.model} --mode train --batch 1 --seq {a.seq}")
    print(f"  wall {wall:.2f} s (target < 15 s)   peak RSS {rss / 1e9:.2f} GB (target < 3 GB)")
    r = in_process(a.model, a.seq, a.repeats)
    print(f"same process, same fake model (best of {a.repeats}):")
    print(f"  FlopCounterMode fwd+bwd         {r['flopcounter_s']:.2f} s  (baseline)")
    print(f"  mlfootprint trace fwd+bwd        {r['trace_fwd_bwd_s']:.2f} s  ratio {r['trace_fwd_bwd_s'] / r['flopcounter_s']:.2f} (target ≤ 2.0)")
    print(f"  mlfootprint trace fwd+bwd+AdamW  {r['trace_with_optimizer_s']:.2f} s  ratio {r['trace_with_optimizer_s'] / r['flopcounter_s']:.2f}")


if __name__ == "__main__":
    main()
