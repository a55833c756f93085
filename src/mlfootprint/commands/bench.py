"""`mlfootprint bench MODEL`: real runs on this machine, measured next to predicted."""
from __future__ import annotations

import argparse

from .output import add_output_options
from .common import add_model_options, add_workload_options, workload_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="real runs on this machine: latency, throughput, MFU, peak memory, energy, vs predicted",
        description="Run the workload for real on this machine (CPU, or CUDA when present) and report the measured "
                    "latency distribution, throughput, MFU, peak memory and energy next to the prediction.")
    add_model_options(p)
    add_workload_options(p)
    g = p.add_argument_group("measuring")
    g.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed steps to run (default: repeat until the median is stable, see --threshold)")
    g.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed warm-up steps first (default 2)")
    g.add_argument("--max-time", type=float, default=None, metavar="S",
                   help="stop repeating after S seconds of timed steps (default 30 when --repeats is not given)")
    g.add_argument("--threshold", type=float, default=0.05, metavar="FRACTION",
                   help="stop when the 95%% confidence interval of the median is within this fraction of it (default 0.05)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    g.add_argument("--no-energy", action="store_true", help="do not read energy meters")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.bench import bench  # torch loads with the verb, not for --help
    return bench(args.model, workload_from(args), inputs=args.input, inputs_ref=args.inputs_ref,
                 repeats=args.repeats, warmup=args.warmup, max_time_s=args.max_time, threshold=args.threshold,
                 device=args.device, energy=not args.no_energy, progress=False if args.no_progress else None,
                 cache=args.cache)
