"""`mlfootprint mfu`: MFU and HFU from a measured throughput — the check a reader makes on a paper.

FLOPs per token come from one of:
  MODEL                         the traced training step (model FLOPs; recomputation for HFU)
  --params/--layers/--heads/--head-dim
                                PaLM appendix B: 6N + 12·L·H·Q·T per token
  --flops-per-token             given directly
"""
from __future__ import annotations

import argparse

from .common import add_cache_option
from .output import add_output_options
from ..workload import PRECISIONS, RECOMPUTE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mfu", help="MFU and HFU from a measured throughput (a training log's or a paper's numbers)",
                       description="MFU = model FLOPs per token × tokens/s / (devices × dense peak); HFU counts "
                                   "recomputation too (PaLM appendix B definitions).")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="a model to trace for its FLOPs per token (catalog name, config.json, hub id, module:callable)")
    src = p.add_argument_group("FLOPs per token without a MODEL")
    src.add_argument("--params", type=float, default=None, metavar="N", help="parameters, e.g. 540.35e9")
    src.add_argument("--layers", type=int, default=None, metavar="L")
    src.add_argument("--heads", type=int, default=None, metavar="H")
    src.add_argument("--head-dim", type=int, default=None, metavar="Q")
    src.add_argument("--flops-per-token", type=float, default=None, metavar="F",
                     help="model (training) FLOPs per token, given directly")
    thr = p.add_argument_group("measured throughput")
    thr.add_argument("--tokens-per-s", type=float, default=None, help="tokens per second, all devices together")
    thr.add_argument("--step-s", type=float, default=None, help="seconds per step (with --batch and --seq)")
    thr.add_argument("--batch", type=int, default=None, help="global batch (samples per step)")
    thr.add_argument("--seq", type=int, default=None, metavar="T", help="sequence length (tokens per sample)")
    hw = p.add_argument_group("hardware")
    hw.add_argument("--hardware", default=None, metavar="ID", help="device id (see: mlfootprint hardware list)")
    hw.add_argument("--devices", type=int, default=1, help="number of devices (default 1)")
    hw.add_argument("--precision", default="bf16", help=f"{{{','.join(PRECISIONS)}}}: selects the peak (default bf16)")
    hw.add_argument("--peak-flops", type=float, default=None, metavar="FLOP/S",
                    help="dense peak per device, instead of the catalog's (e.g. 275e12)")
    p.add_argument("--recompute", default="none", help=f"{{{','.join(RECOMPUTE)}}}: recomputation, for HFU")
    p.add_argument("--input", action="append", default=[], metavar="SHAPE[:DTYPE]", help="inputs of a module:callable MODEL")
    p.add_argument("--inputs", dest="inputs_ref", default=None, metavar="FILE.py:CALLABLE")
    add_cache_option(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.mfu import mfu  # torch loads with the verb, not for --help
    return mfu(args.model, tokens_per_s=args.tokens_per_s, step_s=args.step_s, batch=args.batch, seq=args.seq,
               hardware=args.hardware, devices=args.devices, precision=args.precision, peak_flops=args.peak_flops,
               recompute=args.recompute, params=args.params, layers=args.layers, heads=args.heads,
               head_dim=args.head_dim, flops_per_token=args.flops_per_token, inputs=args.input,
               inputs_ref=args.inputs_ref, cache=args.cache)
