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
    from ..api import count

    wl = workload_from(args)
    rep = count(args.model, wl, inputs=args.input, inputs_ref=args.inputs_ref)
    if args.macs:
        flops = rep.sections["flops"]
        flops["macs_forward"] = flops["forward"] // 2
        flops["macs_backward"] = flops["backward"] // 2
        rep.mark("flops.macs_forward", "counted")
        rep.mark("flops.macs_backward", "counted")
        rep.assume("MACs shown on request: 1 MAC = 2 FLOPs of matrix-class work")
    return rep
