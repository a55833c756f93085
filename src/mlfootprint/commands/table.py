"""`mlfootprint table A.json B.json ...`: the efficiency table of a paper, one row per report."""
from __future__ import annotations

import argparse

from .output import add_output_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "table",
        help="one compact efficiency table over several reports (the paper table: LaTeX, Markdown, CSV)",
        description="One row per report (written with --format json): params, FLOPs, peak memory, step time, MFU, "
                    "energy and CO2e, each column in one unit. A measured figure is used when the report has one; "
                    "modelled cells are marked †.",
        epilog="examples:\n"
               "  mlfootprint analyze gpt2 --format json -o gpt2.json\n"
               "  mlfootprint analyze llama-2-7b --format json -o llama.json\n"
               "  mlfootprint table gpt2.json llama.json --format latex -o efficiency.tex\n"
               "  mlfootprint table gpt2.json llama.json --columns params,flops,memory --label GPT-2 --label Llama",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="REPORT.json", help="reports written with --format json, one row each")
    p.add_argument("--columns", default=None, metavar="LIST",
                   help="comma-separated columns in order: params, flops, flops_per_token, memory, step, "
                        "throughput, mfu, energy, co2e (default: params,flops,memory,step,mfu,energy,co2e)")
    p.add_argument("--label", action="append", default=None, metavar="NAME",
                   help="the name of a row, once per report in order (default: the model's name)")
    add_output_options(p, formats=("table", "json", "md", "latex", "csv"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.table import table  # torch loads with the verbs, not for --help

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    return table(args.files, columns=columns, labels=args.label)
