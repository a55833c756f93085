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
                    "(.html, .tex, .csv, .md, .json). Given the per-rank files of a tracked job "
                    "(rank<N>.jsonl, their .ranks folder, or the report path whose .ranks folder exists), "
                    "it makes the report rank 0 would have written, also after a failure.",
        epilog="examples:\n"
               "  mlfootprint analyze llama-2-7b --mode train --format json -o llama.json\n"
               "  mlfootprint report llama.json -o llama.html\n"
               "  mlfootprint report llama.json --format latex -o llama.tex\n"
               "  mlfootprint report run.json.ranks -o run.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="REPORT.json",
                   help="a report written with --format json, or a tracked job's rank files")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="rank files: steps left out of rates (default: as tracked)")
    add_view_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..verbs.report import load_report  # torch loads with the verb, not for --help

    return load_report(args.files, warmup_steps=args.warmup_steps)
