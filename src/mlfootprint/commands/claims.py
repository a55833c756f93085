"""`mlfootprint claims [--check] [--file F.toml] [--only ID …]`: published claims, recomputed."""
from __future__ import annotations

import argparse
import sys

from ..report.schema import Report
from .common import add_cache_option
from .output import add_output_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="recompute well-known papers' efficiency claims and give a verdict for each")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a claim known to reproduce no longer does (a regression suite)")
    p.add_argument("--file", action="append", default=[], metavar="CLAIMS.toml", help="your own claims file (repeatable)")
    p.add_argument("--allow-code", action="store_true",
                   help="let the --file claims name Python code to import (a model 'file.py:make'); off by default")
    add_cache_option(p)
    p.add_argument("--only", action="append", default=[], metavar="ID", help="check only this claim (repeatable)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes that share the claims (default: one per CPU, at most 4; 1: no workers; Linux forks "
                        "workers, elsewhere the claims run in one process)")
    add_output_options(p, formats=("table", "json", "md", "html"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    from ..verbs.claims import claims  # torch loads with the verb, not for --help
    if args.check:
        args.after_emit = _check
    return claims(args.file, args.only, allow_code=args.allow_code, cache=args.cache, jobs=args.jobs)


def _check(report: Report) -> int:
    from ..verbs.claims import regressions

    bad = regressions(report)
    if bad:
        print(f"mlfootprint: claims no longer reproduced: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0
