"""Trace each distinct block once (trace/dedup.py) against tracing every block, whole processes, same run.

    python benchmarks/bench_trace_dedup.py             # the three workloads of issue 16, each way once
    python benchmarks/bench_trace_dedup.py --repeats 3 # best of 3

For each command, run as a user runs it (a fresh process, importing torch and transformers): wall seconds with
every block traced (MLFOOTPRINT_TRACE_DEDUP=0) and with each distinct block traced once (the default), their
ratio, and each process's peak RSS. The JSON reports of the two runs are compared too (they must be equal
apart from the timing fields): the deduplicated trace is exact.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "count llama-2-70b train seq 4096": ["count", "llama-2-70b", "--mode", "train", "--seq", "4096"],
    "memory llama-3.1-405b ZeRO-3 dp 1024": ["memory", "llama-3.1-405b", "--mode", "train", "--seq", "8192",
                                             "--zero", "3", "--dp", "1024"],
    "plan gpt3-175b 12,288 H100": ["plan", "gpt3-175b", "--devices", "12288", "--hardware", "h100-sxm", "--seq", "2048",
                                   "--batch", "6144"],
}

# The child runs the CLI and reports its own peak RSS (RUSAGE_CHILDREN would keep the largest child's).
CHILD = ("import atexit, resource, runpy, sys\n"
         "atexit.register(lambda: print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "
         "file=sys.stderr))\n"
         "sys.argv = ['mlfootprint'] + sys.argv[1:]\n"
         "runpy.run_module('mlfootprint', run_name='__main__')\n")

VOLATILE = {"trace_s", "plan_s", "created", "created_at", "elapsed_s", "wall_s", "duration_s", "version", "timestamp"}


def run(args: list[str], dedup: bool, out: str) -> tuple[float, int]:
    # each run traces: an empty trace cache of its own (a cached trace would answer the second run)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, MLFOOTPRINT_TRACE_DEDUP="1" if dedup else "0", MLFOOTPRINT_NO_PROGRESS="1",
                   MLFOOTPRINT_CACHE_DIR=cache)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, *args, "--format", "json", "-o", out, "--force"],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    rss = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS"))
    return wall, rss


def stable(obj):
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs each way (default 1)")
    parser.add_argument("--only", choices=sorted(COMMANDS), help="one command")
    opts = parser.parse_args()
    print(f"{'command':40} {'full s':>8} {'dedup s':>8} {'ratio':>6} {'full RSS':>9} {'dedup RSS':>9}  reports")
    with tempfile.TemporaryDirectory() as tmp:
        for label, args in COMMANDS.items():
            if opts.only and label != opts.only:
                continue
            full_json, dedup_json = os.path.join(tmp, "full.json"), os.path.join(tmp, "dedup.json")
            full = min(run(args, False, full_json) for _ in range(opts.repeats))
            dedup = min(run(args, True, dedup_json) for _ in range(opts.repeats))
            with open(full_json) as f, open(dedup_json) as g:
                same = stable(json.load(f)) == stable(json.load(g))
            print(f"{label:40} {full[0]:8.2f} {dedup[0]:8.2f} {dedup[0] / full[0]:6.2f} "
                  f"{full[1] / 1e9:7.2f}GB {dedup[1] / 1e9:7.2f}GB  {'equal' if same else 'DIFFER'}", flush=True)


if __name__ == "__main__":
    main()
