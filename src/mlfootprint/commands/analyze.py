"""`mlfootprint analyze [MODEL]`: the efficiency card (default model: gpt2)."""
from __future__ import annotations

import argparse

from .output import add_output_options
from .common import (add_model_options, add_other_bytes_option, add_site_options, add_view_options,
                     add_workload_options, site_from, workload_from)
from .predict import add_prediction_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="the efficiency card for one workload (default model: gpt2)")
    add_model_options(p)
    add_workload_options(p)
    add_other_bytes_option(p)
    add_prediction_options(p)
    add_site_options(p)
    add_view_options(p)
    p.add_argument("--even-if-oom", action="store_true",
                   help="give time, energy, CO2e and cost even when the workload does not fit in memory")
    add_output_options(p)
    p.set_defaults(func=run, depth=1)


def run(args: argparse.Namespace):
    from ..verbs.analyze import analyze  # torch loads with the verb, not for --help
    return analyze(args.model, workload_from(args), inputs=args.input, inputs_ref=args.inputs_ref, efficiency=args.efficiency,
                   site=site_from(args), even_if_oom=args.even_if_oom, cache=args.cache)
