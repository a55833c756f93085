"""Start-up time of the command line (target: `mlfootprint --help` and `--version` under 0.5 s).

Each command runs as a fresh process, as a user types it, ``--runs`` times; the median wall time is printed with
two baselines measured in the same run on the same machine: a bare ``python -c pass`` (the interpreter's own
start-up) and ``python -c "import torch"`` (what ``--help`` cost when it imported torch).

    python benchmarks/bench_startup.py [--runs 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    python = wall([py, "-c", "pass"], args.runs)
    torch = wall([py, "-c", "import torch"], args.runs)
    print(f"baseline  python -c pass       {python:6.3f} s")
    print(f"baseline  python -c 'import torch' {torch:6.3f} s")
    for label, argv in (("mlfootprint --help", [py, "-m", "mlfootprint", "--help"]),
                        ("mlfootprint --version", [py, "-m", "mlfootprint", "--version"]),
                        ("mlfootprint analyze --help", [py, "-m", "mlfootprint", "analyze", "--help"])):
        t = wall(argv, args.runs)
        verdict = "ok" if t < TARGET_S else "OVER TARGET"
        print(f"{label:28s} {t:6.3f} s  ({t / python:4.1f}× bare python, {t / torch:4.2f}× import torch; "
              f"target < {TARGET_S} s: {verdict})")


if __name__ == "__main__":
    main()
