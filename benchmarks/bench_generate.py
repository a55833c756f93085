"""Speed of the closed-form generation time against the per-token loop it replaced, in the same run.

    python benchmarks/bench_generate.py

Prints, for gpt2 on an H100 at batch 1 and batch 512 (memory bound throughout / crossing to memory bound):
  the per-token loop (one decode step per generated token) for 10^5 tokens, the closed form for 10^5 and 10^9
  tokens, best of N each, and the relative difference of the two sums at 10^5 tokens (expected: ~1e-15).
Then `mlfootprint predict llama-2-7b --mode generate --gen-tokens N` as a user runs it, N = 128 (baseline) and
10^9: wall seconds (the same: the trace, not the generation, sets the time). gpt2 with 10^9 tokens is refused
at once (learned positions end at 1024).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def best(fn, repeats: int) -> tuple[float, float]:
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> None:
    from mlfootprint.analysis.predict.inference import decode_line, decode_model, generate_time
    from mlfootprint.analysis.predict.prediction import prepare
    from mlfootprint.trace.run import trace
    from mlfootprint.verbs.common import resolve_model
    from mlfootprint.workload import Layout, Workload

    wl = Workload(batch=1, seq=128, mode="inference", precision="bf16")
    spec = resolve_model("gpt2")
    tr = trace(spec, wl, checkpoint_early_stop=False)
    dev, eff, profile, _ = prepare(spec, wl, tr, "h100-sxm")
    dm = decode_model(spec, wl, tr)
    for batch in (1, 512):
        line = decode_line(dm, profile, Layout(), dev, eff, batch)
        n = 10**5
        loop_s, loop = best(lambda: sum(line.step(128 + i).token_s for i in range(n)), 3)
        closed_s, closed = best(lambda: generate_time(dm, profile, Layout(), dev, eff, batch, 128, n), 50)
        huge_s, _ = best(lambda: generate_time(dm, profile, Layout(), dev, eff, batch, 128, 10**9), 50)
        print(f"batch {batch:>3}: loop 1e5 tokens {loop_s * 1e3:9.2f} ms | closed form 1e5 {closed_s * 1e6:7.1f} µs, "
              f"1e9 {huge_s * 1e6:7.1f} µs | relative difference {abs(closed - loop) / loop:.1e}")
    # the same command at the default 128 tokens is the baseline: both are the trace of llama-2-7b plus constant work
    for gen in ("128", "1000000000"):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "mlfootprint", "predict", "llama-2-7b", "--mode", "generate",
                                   "--gen-tokens", gen, "--format", "json", "-o", os.path.join(tmp, "r.json")],
                                  capture_output=True, text=True)
        print(f"predict llama-2-7b --mode generate --gen-tokens {gen}: {time.perf_counter() - start:.2f} s wall "
              f"(exit {proc.returncode})")

if __name__ == "__main__":
    main()
