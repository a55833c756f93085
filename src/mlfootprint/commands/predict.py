"""`mlfootprint predict MODEL`: step time, tokens/s, MFU/HFU, time to train, device-hours, serving latency."""
from __future__ import annotations

import argparse
from typing import Any

from .output import add_output_options
from .common import (add_model_options, add_other_bytes_option, add_site_options, add_view_options,
                     add_workload_options, site_from, workload_from)


def add_prediction_options(p: argparse.ArgumentParser, zeropp: bool = True) -> None:
    g = p.add_argument_group("prediction")
    g.add_argument("--efficiency", default=None, metavar="NAME=VALUE[,...]",
                   help="override efficiency factors, e.g. matmul=0.6,network=0.7 (defaults and sources: "
                        "mlfootprint/analysis/predict/data/efficiency.toml)")
    if zeropp:
        add_zeropp_option(g)


def add_zeropp_option(g: Any) -> None:
    """--zeropp: a layout option of the verbs that size or time a layout (analyze, predict, memory)."""
    g.add_argument("--zeropp", action="store_true", default=None,
                   help="ZeRO++ with --zero 3: int8 weight gathers, int4 gradients, hierarchical partitioning (hpZ's "
                        "secondary 16-bit weight copy over a node's data-parallel ranks)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="step time, tokens/s, MFU/HFU, time to train, device-hours, serving latency",
                       description="Predict one step of a workload on a device layout from the traced operators "
                                   "(roofline + communication), and what follows: MFU/HFU, time to train --tokens, "
                                   "device-hours, devices needed for a --deadline; prefill/decode latency when serving. "
                                   "--mode defaults to train here.")
    add_model_options(p)
    add_workload_options(p, mode_default="train")
    add_prediction_options(p)
    g = p.add_argument_group("given utilization (instead of the roofline)")
    g.add_argument("--mfu", type=float, default=None, help="assume this model FLOPs utilization (0-1)")
    g.add_argument("--hfu", type=float, default=None, help="assume this hardware FLOPs utilization (0-1)")
    g.add_argument("--flops-per-device", type=float, default=None, metavar="FLOP/S",
                   help="assume this achieved hardware FLOP/s per device, recomputation included (e.g. 140e12, "
                        "Megatron-LM's convention)")
    p.add_argument("--deadline", default=None, metavar="DURATION",
                   help="with --tokens: devices needed to finish within e.g. 90d, 36h, 2w (at --deadline-mfu, "
                        "default the predicted MFU)")
    p.add_argument("--deadline-mfu", type=float, default=None, help="MFU assumed for --deadline (0-1)")
    add_other_bytes_option(p)
    add_site_options(p)
    p.add_argument("--even-if-oom", action="store_true",
                   help="give time, energy, CO2e and cost even when the workload does not fit in memory")
    add_view_options(p)
    add_output_options(p)
    p.set_defaults(func=run, depth=1)


def run(args: argparse.Namespace):
    from ..verbs.predict import predict  # torch loads with the verb, not for --help
    return predict(args.model, workload_from(args), args.input, args.inputs_ref, efficiency=args.efficiency, mfu=args.mfu,
                   hfu=args.hfu, flops_per_device=args.flops_per_device, deadline=args.deadline,
                   deadline_mfu=args.deadline_mfu, site=site_from(args),
                   even_if_oom=args.even_if_oom, cache=args.cache)
