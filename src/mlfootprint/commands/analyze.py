"""`mlfootprint analyze [MODEL]`: the efficiency card (default model: gpt2)."""
from __future__ import annotations

import argparse

from .output import add_output_options
from .common import add_model_options, add_view_options, add_workload_options, workload_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="the efficiency card for one workload (default model: gpt2)")
    add_model_options(p)
    add_workload_options(p)
    add_view_options(p)
    p.add_argument("--details", action="store_true",
                   help="also show every breakdown table (memory at peak, layout, …) and the whole workload")
    add_output_options(p)
    p.set_defaults(func=run, depth=1)


# The device assumed when none is named, so the card can show time, MFU, energy, CO2e and cost.
DEFAULT_HARDWARE = "a100-80gb"


def run(args: argparse.Namespace):
    from ..api import analyze

    wl = workload_from(args)
    assumed_device = wl.hardware is None and wl.device_memory is None
    if assumed_device:
        wl.hardware = DEFAULT_HARDWARE
    rep = analyze(args.model, wl, inputs=args.input, inputs_ref=args.inputs_ref)
    if assumed_device:
        rep.mark("workload.hardware", "assumed")
        rep.assume(f"no --hardware given: time, memory fit and footprint are for one {DEFAULT_HARDWARE} "
                   "(choose yours with --hardware ID; see 'mlfootprint hardware list')")
    return rep
