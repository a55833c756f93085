"""`mlfootprint memory MODEL`: per-device memory by component, whether it fits, the largest batch that fits."""
from __future__ import annotations

import argparse

from ..workload import Workload
from .common import add_model_options, add_workload_options
from .output import add_output_options
from .predict import add_zeropp_option

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="per-device memory by component, whether it fits, the largest batch that fits")
    add_model_options(p)
    add_workload_options(p)
    g = p.add_argument_group("memory")
    add_zeropp_option(g)
    g.add_argument("--device-memory", default=None, metavar="SIZE",
                   help="memory of one device, e.g. 80GB or 80GiB (instead of --hardware ID)")
    g.add_argument("--max-batch", action="store_true",
                   help="search for the largest batch that fits (re-traces the model; needs a device size)")
    g.add_argument("--other-bytes", default=None, metavar="SIZE",
                   help="framework overhead per device: CUDA context, workspaces, fragmentation (default 1GB, assumed)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.memory import memory  # torch loads with the verb, not for --help
    options = dict(vars(args), device_memory=None, other_bytes=None)  # sizes go to the verb as text
    return memory(args.model, Workload.from_options(options), inputs=args.input, inputs_ref=args.inputs_ref,
                  device_memory=args.device_memory, max_batch=args.max_batch, other_bytes=args.other_bytes,
                  cache=args.cache)
