"""Terminal renderer (rich tables)."""
from __future__ import annotations

import argparse
import io

from rich.console import Console
from rich.table import Table

from .layout import blocks
from .render import renderer
from .schema import Report


@renderer("table")
def render_table(report: Report, args: argparse.Namespace | None) -> str:
    depth = getattr(args, "depth", 2) if args is not None else 2
    show_ops = bool(getattr(args, "by_op", False)) if args is not None else False
    macs = bool(getattr(args, "macs", False)) if args is not None else False
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=False, color_system=None, highlight=False)
    details = bool(getattr(args, "details", True)) if args is not None else True
    name = (report.get("model") or {}).get("name")
    console.print(f"mlfootprint {report.verb}" + (f": {name}" if name else ""))  # also marks a file as ours (-o)
    for block in blocks(report, depth=depth, show_ops=show_ops, macs=macs, details=details):
        table = Table(title=block.title, title_justify="left", show_lines=False, expand=False)
        for h in block.headers:
            table.add_column(h, overflow="fold")
        for row in block.rows:
            table.add_row(*row)
        console.print(table)
        if block.note:
            console.print(block.note)
    if report.conventions:
        console.print("Conventions: " + "; ".join(f"{k}: {v}" for k, v in report.conventions.items()))
    return buf.getvalue()
