"""`mlfootprint compare A.json B.json ...`: figures side by side and a Pareto front of two of them."""
from __future__ import annotations

import argparse

from .output import add_output_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare saved reports side by side, with the Pareto front of two figures",
        description="Compare reports (written with --format json): their main figures side by side, and the "
                    "Pareto-optimal reports on two figures (plotted in the HTML form). Figures are named by their "
                    "dotted path in the report (flops.model, time.step_s, memory.peak_bytes, footprint.co2e_g) or, "
                    "for a user metric, by its name.",
        epilog="Lower is better for cost-like figures (params, FLOPs, bytes, time, energy, CO2e, water, cost); "
               "higher for throughput, MFU and user metrics. --maximize/--minimize override.\n\n"
               "examples:\n"
               "  mlfootprint compare a.json b.json c.json\n"
               "  mlfootprint compare a.json b.json --metric accuracy=81.2 --metric accuracy=79.0 "
               "--x footprint.co2e_g --y accuracy -o pareto.html\n"
               "  mlfootprint compare a.json b.json --format latex -o table.tex",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="REPORT.json", help="two or more reports written with --format json")
    p.add_argument("--x", default=None, metavar="FIGURE",
                   help="x axis of the Pareto plot (default: the first of CO2e, energy, step time, peak memory, "
                        "model FLOPs, params that the reports share)")
    p.add_argument("--y", default=None, metavar="FIGURE", help="y axis of the Pareto plot (default: the first --metric)")
    p.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE",
                   help="a figure of your own (accuracy, BLEU, ...), given once per report in the order of the "
                        "reports; nan for a report without it")
    p.add_argument("--maximize", action="append", default=[], metavar="FIGURE", help="higher is better for FIGURE")
    p.add_argument("--minimize", action="append", default=[], metavar="FIGURE", help="lower is better for FIGURE")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.compare import compare  # torch loads with the verb, not for --help
    return compare(args.files, metrics=args.metric, x=args.x, y=args.y, maximize=args.maximize,
                   minimize=args.minimize)
