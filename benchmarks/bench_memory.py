"""Speed of the memory verb: wall time and peak RSS, each next to a baseline measured in the same run.

    python benchmarks/bench_memory.py            # both benchmarks
    python benchmarks/bench_memory.py --quick    # smaller models, for a smoke run

1. ``mlfootprint memory llama-3.1-405b --mode train --seq 8192 --zero 3 --dp 1024 --precision bf16-mixed``
   (targets: < 30 s, < 4 GB peak RSS). Baseline: the bare trace of the same workload in a fresh process
   (what every verb pays); the ratio says what the memory model adds on top. Also timed in-process:
   classifying the trace once (memory_model) and one thousand per_device() calls for other layouts (what
   the planner does).
2. ``--max-batch`` for llama-2-7b (target < 30 s). Baseline: one bare trace of the same model; the ratio is
   about the number of traces the search needed.

Each command runs in its own process; its peak RSS comes from the kernel (wait4's ru_maxrss).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BARE_TRACE = """
import sys, time
from mlfootprint.verbs.common import traced
from mlfootprint.workload import Workload
kw = eval(sys.argv[2])
wl = Workload(**kw)
t = time.perf_counter()
traced(sys.argv[1], wl)
print(f"trace_s={time.perf_counter() - t:.2f}")
"""

PLANNER = """
import sys, time
from mlfootprint.verbs.common import traced
from mlfootprint.analysis.memory import memory_model
from mlfootprint.workload import Layout, Workload
kw = eval(sys.argv[2])
wl = Workload(**kw)
spec, wl, tr = traced(sys.argv[1], wl)
t = time.perf_counter()
mm = memory_model(spec, wl, tr)
t_model = time.perf_counter() - t
base = Layout.from_workload(wl)
layouts = []
for tp in (1, 2, 4, 8):
    for pp in (1, 2, 4, 8):
        for zero in (0, 1, 2, 3):
            for mb in (1, 2, 4, 8):
                for rc in ("none", "selective", "full"):
                    layouts.append(base.replace(tp=tp, pp=pp, zero=zero, dp=max(1, 1024 // (tp * pp)), micro_batch=mb,
                                                recompute=rc))
layouts = layouts[:1000]
t = time.perf_counter()
for lay in layouts:
    mm.per_device(lay)
t_calls = time.perf_counter() - t
t = time.perf_counter()
for lay in layouts:
    mm.per_device(lay)
t_cached = time.perf_counter() - t
print(f"memory_model_s={t_model:.3f} per_device_calls={len(layouts)} per_device_total_s={t_calls:.3f} "
      f"per_device_mean_ms={1000 * t_calls / len(layouts):.3f} cached_total_s={t_cached:.4f}")
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, stdout) of one command in its own process (RSS from wait4's rusage)."""
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err.read()}")
    return wall, usage.ru_maxrss * 1024 / 1e9, out  # Linux: ru_maxrss in KiB


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlfootprint", *args]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller models (a smoke run)")
    a = ap.parse_args()
    big, big_seq = ("llama-2-7b", "2048") if a.quick else ("llama-3.1-405b", "8192")
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.2f}")

    # --- 1. the 405B memory command
    kw = dict(mode="train", seq=int(big_seq), zero=3, dp=1024, precision="bf16-mixed")
    base_wall, base_rss, base_out = run([sys.executable, "-c", BARE_TRACE, big, repr(kw)])
    args = ["memory", big, "--mode", "train", "--seq", big_seq, "--zero", "3", "--dp", "1024",
            "--precision", "bf16-mixed", "--format", "json"]
    wall, rss, _ = run(cli(*args))
    print(f"[1] mlfootprint {' '.join(args[:-2])}")
    print(f"    wall {wall:.1f} s (target < 30 s), peak RSS {rss:.2f} GB (target < 4 GB)")
    print(f"    baseline: bare trace process {base_wall:.1f} s ({base_out.strip()}), peak RSS {base_rss:.2f} GB; "
          f"ratio memory/bare = {wall / base_wall:.2f}")
    _, _, plan_out = run([sys.executable, "-c", PLANNER, big, repr(kw)])
    print(f"    in-process: {plan_out.strip()}")

    # --- 2. max_batch search for llama-2-7b
    kw2 = dict(mode="train", seq=2048, zero=3, dp=8, precision="bf16-mixed")
    b_wall, _, b_out = run([sys.executable, "-c", BARE_TRACE, "llama-2-7b", repr(kw2)])
    args2 = ["memory", "llama-2-7b", "--mode", "train", "--seq", "2048", "--zero", "3", "--dp", "8",
             "--precision", "bf16-mixed", "--device-memory", "80GB", "--max-batch", "--format", "json"]
    wall2, rss2, out2 = run(cli(*args2))
    import json

    mem = json.loads(out2)["memory"]
    print(f"[2] mlfootprint {' '.join(args2[:-2])}")
    print(f"    wall {wall2:.1f} s (target < 30 s), peak RSS {rss2:.2f} GB; max_micro_batch {mem['max_micro_batch']}, "
          f"max_batch {mem['max_batch']}, traces {mem['max_batch_traces']}")
    print(f"    baseline: one bare trace process {b_wall:.1f} s ({b_out.strip()}); ratio search/bare = {wall2 / b_wall:.2f}")


if __name__ == "__main__":
    main()
