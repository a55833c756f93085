"""`mlfootprint report FILE.json`: render a saved report in any format."""
from __future__ import annotations

import argparse

from .output import add_output_options
from .common import add_view_options

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render a saved report (JSON) as a table, Markdown, LaTeX, CSV or a self-contained HTML page",
        description="Render a report saved with --format json again, in any format. "
                    "With -o and no --format, the file's extension picks the format "
                    "(.html, .tex, .csv, .md, .json).",
        epilog="examples:\n"
               "  mlfootprint analyze llama-2-7b --mode train --format json -o llama.json\n"
               "  mlfootprint report llama.json -o llama.html\n"
               "  mlfootprint report llama.json --format latex -o llama.tex",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="REPORT.json", help="a report written with --format json")
    add_view_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..report.schema import Report

    return Report.load(args.file)  # one-line UserError: not a report, newer schema, unreadable
