"""`mlfootprint hardware`: list and show the device catalog, calibrate this machine."""
from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from .output import add_output_options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "hardware",
        help="list and show the device catalog; calibrate this machine",
        description="The device catalog (peak FLOP/s, memory, bandwidths, power, price; each with its source) "
        "and `calibrate`, which measures this machine and saves it as the device 'this'.",
    )
    p.set_defaults(func=lambda args: _print_help(p))
    sub = p.add_subparsers(dest="hardware_command", metavar="COMMAND", parser_class=type(p))

    lp = sub.add_parser("list", help="every known device, one line each",
                        description="Every known device, one line each.")
    add_output_options(lp)
    lp.set_defaults(func=_list)

    sp = sub.add_parser("show", help="every figure of one device with its source and date",
                        description="Every figure of one device with its source and date.")
    sp.add_argument("id", metavar="ID", help="device id, e.g. h100-sxm (see: mlfootprint hardware list)")
    add_output_options(sp)
    sp.set_defaults(func=_show)

    cp = sub.add_parser(
        "calibrate",
        help="measure this machine (matmul FLOP/s, memory bandwidth, per-op overhead)",
        description="Measure what this machine achieves (matmul FLOP/s per dtype, memory bandwidth, per-op "
        "overhead) and save it as the device 'this' (use it with --hardware this).",
    )
    cp.add_argument("--budget-s", type=float, default=45.0, metavar="N",
                    help="seconds of timed work (default: 45)")
    cp.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    cp.add_argument("--no-save", action="store_true", help="print the figures without saving the profile")
    add_output_options(cp)
    cp.set_defaults(func=_calibrate)


# The verbs (and torch) load when a command runs, not for --help.
def _list(args: argparse.Namespace):
    from ..verbs.catalogs import hardware_list

    return hardware_list()


def _show(args: argparse.Namespace):
    from ..verbs.catalogs import hardware_show

    return hardware_show(args.id)


def _calibrate(args: argparse.Namespace):
    from ..verbs.catalogs import hardware_calibrate

    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def progress(message: str, fraction: float) -> None:
        if not message.endswith("…") and message != "done":
            err.print(f"  [{fraction:4.0%}] {message}")

    rep = hardware_calibrate(budget_s=args.budget_s, device=args.device, save=not args.no_save, progress=progress,
                             say=err.print)
    saved = (rep.get("catalog") or {}).get("saved_to")
    err.print(f"saved the profile to {saved}; use it with --hardware this" if saved else "not saved (--no-save)")
    return rep


def _print_help(p: argparse.ArgumentParser) -> None:
    p.print_help()
