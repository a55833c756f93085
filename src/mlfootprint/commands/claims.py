"""`mlfootprint claims [--check] [--file F.toml] [--only ID …]`: published claims, recomputed."""
from __future__ import annotations

import argparse
import sys

from .output import add_output_options, output_format, write_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="recompute well-known papers' efficiency claims and give a verdict for each")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a claim known to reproduce no longer does (a regression suite)")
    p.add_argument("--file", action="append", default=[], metavar="CLAIMS.toml", help="your own claims file (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="ID", help="check only this claim (repeatable)")
    add_output_options(p, formats=("table", "json", "md", "html"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace):
    from ..claims import as_rows, load_claims, regressions, run_claims
    from ..claims.render import to_html, to_markdown, to_text
    from ..report.schema import Report

    results = run_claims(load_claims(args.file), args.only)
    rows = as_rows(results)
    fmt = output_format(args)
    if fmt == "json":
        rep = Report(verb="claims")
        rep.set_section("claims", {"rows": rows})
        for cid, r in rows.items():
            rep.mark(f"claims.rows.{cid}.published", "published")
        text = rep.to_json()
    else:
        text = {"table": to_text, "md": to_markdown, "html": to_html}[fmt](rows)
    write_output(args, text)
    bad = regressions(results)
    if args.check and bad:
        print(f"mlfootprint: claims no longer reproduced: {', '.join(c.id for c in bad)}", file=sys.stderr)
        raise SystemExit(1)
    return None
