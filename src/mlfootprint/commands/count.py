"""`mlfootprint count MODEL`: params and FLOPs by module and by operator."""
from __future__ import annotations

import argparse

from .output import add_output_options
from .common import add_model_options, add_view_options, add_workload_options, workload_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("count", help="params and FLOPs (forward, backward, optimizer) by module and by op")
    add_model_options(p)
    add_workload_options(p, parallel=False)
    add_view_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.count import count  # torch loads with the verb, not for --help
    return count(args.model, workload_from(args), inputs=args.input, inputs_ref=args.inputs_ref, macs=args.macs, cache=args.cache)
