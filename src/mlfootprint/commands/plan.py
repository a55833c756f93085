"""`mlfootprint plan MODEL --devices N --hardware ID`: ranked parallel layouts that fit in memory."""
from __future__ import annotations

import argparse

from .output import add_output_options
from .common import add_model_options, add_workload_options, workload_from
from .predict import add_prediction_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="ranked parallel layouts (TP/PP/DP/ZeRO/micro-batch/recompute) for N devices",
                       description="Enumerate tensor × pipeline × data-parallel layouts with ZeRO stage, micro-batch "
                                   "and recomputation for --devices N, keep those that fit in memory, rank them by "
                                   "predicted throughput and explain the winner's bottleneck. Fix any choice with "
                                   "--tp/--pp/--zero/--micro-batch/--recompute. --batch is the global batch "
                                   "(default: about 4M tokens, or 64 samples for a LoRA fine-tune, a multiple of N).")
    add_model_options(p)
    add_workload_options(p, mode_default="train",
                         batch_default="about 4M tokens, or 64 samples for a LoRA fine-tune, a multiple of --devices",
                         hardware_help="required")
    add_prediction_options(p, zeropp=False)
    p.add_argument("--top", type=int, default=10, help="layouts to show (default 10)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes that trace the layouts' micro-batches (default: one per CPU, at most 4; 1: no "
                        "workers; Linux forks workers, elsewhere everything runs in one process)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.plan import plan  # torch loads with the verb, not for --help
    return plan(args.model, workload_from(args), args.input, args.inputs_ref, efficiency=args.efficiency,
                top=args.top, cache=args.cache, jobs=args.jobs)
