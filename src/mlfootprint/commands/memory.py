"""`mlfootprint memory MODEL`: per-device memory by component, whether it fits, the largest batch that fits."""
from __future__ import annotations

import argparse
import re

from .output import add_output_options
from ..core.errors import UserError
from .common import add_model_options, add_workload_options, workload_from

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str, option: str) -> int:
    """'80GB' (1e9), '80GiB' (2^30), '8e10', '1024' (bytes) → bytes."""
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UserError(f"malformed {option} {text!r}: write a size such as 80GB (10^9 bytes), 80GiB (2^30 bytes) or 8e10")
    return int(round(float(m.group(1)) * _UNITS[unit]))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="per-device memory by component, whether it fits, the largest batch that fits")
    add_model_options(p)
    add_workload_options(p)
    g = p.add_argument_group("memory")
    g.add_argument("--device-memory", default=None, metavar="SIZE",
                   help="memory of one device, e.g. 80GB or 80GiB (instead of --hardware ID)")
    g.add_argument("--max-batch", action="store_true",
                   help="search for the largest batch that fits (re-traces the model; needs a device size)")
    g.add_argument("--other-bytes", default=None, metavar="SIZE",
                   help="framework overhead per device: CUDA context, workspaces, fragmentation (default 1GB, assumed)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..memory.section import memory_report

    device = parse_size(args.device_memory, "--device-memory") if args.device_memory is not None else None
    if device is not None and device < 1:
        raise UserError(f"--device-memory must be positive, got {args.device_memory!r}")
    other = parse_size(args.other_bytes, "--other-bytes") if args.other_bytes is not None else None
    args.device_memory = device
    args.other_bytes = other
    wl = workload_from(args)
    if args.max_batch and device is None and not wl.hardware:
        raise UserError("--max-batch needs a device memory size: give --device-memory 80GB or --hardware ID")
    return memory_report(args.model, wl, inputs=args.input, inputs_ref=args.inputs_ref, device_bytes=device,
                         find_max_batch=args.max_batch, other_bytes=other)
