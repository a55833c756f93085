"""The terminal form: the answer first (``report/card.py``), every breakdown with ``--details``.

The width is the terminal's (or ``COLUMNS``, or 100 when writing a file); colour only on a terminal and
never with ``NO_COLOR``; names are never broken mid-word (long names are cut with an ellipsis instead).
"""
from __future__ import annotations

import argparse
import io
import os
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import card
from .layout import Block, blocks, compare_blocks, pred_measured_block, predicted_vs_measured, ranked_layouts
from .render import renderer, text_width
from .schema import Report

DEFAULT_WIDTH = 100
NOTE_MIN = 24  # columns a card's notes need beside its figures
_PROVENANCE_STYLE = {"counted": "green", "measured": "cyan", "modeled": "yellow", "published": "blue",
                     "assumed": "magenta"}


def _option(args: argparse.Namespace | None, name: str, default: Any) -> Any:
    value = getattr(args, name, None) if args is not None else None
    return default if value is None else value


def console_for(args: argparse.Namespace | None) -> tuple[Console, io.StringIO]:
    width = text_width(args, DEFAULT_WIDTH)
    color = bool(_option(args, "color", False)) and not os.environ.get("NO_COLOR")
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="auto" if color else None,
                      highlight=False, soft_wrap=False, legacy_windows=False,
                      markup=False)  # text from a report is text: '[/b]' or '[link=javascript:…]' is not markup
    return console, buf


@renderer("table")
def render_table(report: Report, args: argparse.Namespace | None) -> str:
    console, buf = console_for(args)
    details = bool(_option(args, "details", False))
    view = card.VIEWS.get(report.verb)
    if view is not None and not details:
        _compact(console, report, view, args)
    elif report.verb == "compare" and not details:
        # the comparison, its Pareto front and the reports compared; their assumptions with --details
        console.print(Text("mlfootprint compare", style="bold"))
        for block in compare_blocks(report.get("compare") or {}):
            _table(console, block)
        console.print(Text(card.footer(report), style="dim"))
    else:
        _full(console, report, args)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _compact(console: Console, report: Report, view: Any, args: argparse.Namespace | None) -> None:
    console.print(Text(card.title(report), style="bold"))
    line = card.workload_line(report)
    if line:
        console.print(line)
    rows, warnings = view(report)
    if rows:
        # the notes beside the figures while at least NOTE_MIN columns are left for them; below the table otherwise
        # (a narrow terminal folded them one character a line)
        fixed = sum(max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("figure", "value", "provenance")))
        beside = console.width - fixed - 3 >= NOTE_MIN
        table = Table(box=box.SIMPLE_HEAD, show_header=True, show_edge=False, pad_edge=False, padding=(0, 1),
                      expand=False)
        table.add_column("figure", no_wrap=True, style="bold")
        table.add_column("value", no_wrap=True, justify="right")
        table.add_column("provenance", no_wrap=True)
        if beside:
            table.add_column("note", overflow="fold")
        for label, value, prov, note in rows:
            style = "bold red" if "DOES NOT FIT" in note else None
            cells = [label, value, Text(prov, style=_PROVENANCE_STYLE.get(prov, ""))]
            table.add_row(*cells, *([Text(note, style=style or "")] if beside else []))
        console.print(table)
        if not beside:
            for label, _, _, note in rows:
                if note:
                    console.print(Text(f"{label}: {note}", style="bold red" if "DOES NOT FIT" in note else ""))
    if report.verb == "plan":
        heads, ranked = ranked_layouts(report)
        _table(console, Block("Layouts that fit, fastest first", heads, ranked[:10]))
        explanation = (report.get("plan") or {}).get("explanation")
        if explanation:
            console.print(explanation)
    if report.verb == "count":
        for block in card.breakdown_blocks(report, int(_option(args, "depth", 1)), bool(_option(args, "macs", False)),
                                           bool(_option(args, "by_op", False))):
            _table(console, block)
        unsupported = (report.get("flops") or {}).get("unsupported_ops")
        if unsupported:
            console.print(Text("Operators without a FLOP formula (counted as unknown, not zero): "
                               + ", ".join(f"{op} ×{n}" for op, n in sorted(unsupported.items())), style="yellow"))
    pairs = predicted_vs_measured(report)
    if pairs:
        _table(console, pred_measured_block(pairs))
    for w in warnings:
        console.print(Text(w, style="bold red" if w.startswith("✗") else ""))
    keys = card.key_assumptions(report)
    if keys:
        console.print("Assumptions that moved these numbers most:")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, justify="right")
        grid.add_column(overflow="fold")
        for i, text in enumerate(keys):
            grid.add_row(f"  {i + 1}.", text)
        console.print(grid)
    console.print(Text(card.footer(report), style="dim"))


def _full(console: Console, report: Report, args: argparse.Namespace | None) -> None:
    name = (report.get("model") or {}).get("name")
    console.print(Text(f"mlfootprint {report.verb}" + (f": {name}" if name else ""), style="bold"))
    view = card.VIEWS.get(report.verb)
    if view is not None:
        _compact_rows(console, report, view)
    for block in blocks(report, depth=int(_option(args, "depth", 2)), show_ops=bool(_option(args, "by_op", False)),
                        macs=bool(_option(args, "macs", False)), details=True):
        _table(console, block)
    if report.conventions:
        console.print("Conventions: " + "; ".join(f"{k}: {v}" for k, v in report.conventions.items()))


def _compact_rows(console: Console, report: Report, view: Any) -> None:
    rows, warnings = view(report)
    if rows:
        _table(console, Block("Summary", ["figure", "value", "provenance", "note"], [list(r) for r in rows]))
    for w in warnings:
        console.print(w)


def rich_table(heads: list[str], rows: list[list[str]]) -> Table:
    """A plain table: names left and never folded, figures right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for i, h in enumerate(heads):
        table.add_column(h, no_wrap=i == 0, overflow="ellipsis" if i == 0 else "fold", justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _built(console: Console, title: str, headers: list[str], rows: list[list[str]], longest: list[int],
           whole: set[int]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  expand=False)
    for i, h in enumerate(headers):
        # names (the first column) are never folded mid-word, nor cut while they fit in 48 columns; a short
        # second column (values) stays on one line; the figures in ``whole`` too; longer text folds
        keep = i == 0 or (i == 1 and longest[i] <= 32) or i in whole
        table.add_column(h, no_wrap=keep, overflow="ellipsis" if keep else "fold",
                         min_width=min(longest[i], 48) if i == 0 or i in whole else None)
    for row in rows:
        table.add_row(*row)
    return table


def _needed(headers: list[str], rows: list[list[str]], longest: list[int], whole: set[int]) -> int:
    """The columns a table needs with the ``whole`` figures on one line and each other column folded into 16 (or
    its own width, if less): rendered at a generous width and measured."""
    wide = Console(file=io.StringIO(), width=1000, color_system=None, highlight=False, markup=False)
    clipped = [[c if i in whole or i == 0 else c[:16] for i, c in enumerate(r)] for r in rows]
    heads = [h if i in whole or i == 0 else h[:16] for i, h in enumerate(headers)]
    wide.print(_built(wide, "", heads, clipped, longest, whole))
    return max((len(line.rstrip()) for line in wide.file.getvalue().splitlines()), default=0)


def _table(console: Console, block: Block) -> None:
    """A block as a table that fits the terminal. Figures (cells of at most 12 characters: '78.36 GiB', '2.6 min')
    stay whole; when the table is too wide so, in turn: a last column of text (plan's 'vs #1') goes below the table,
    row by row; columns with one value in every row are said once above it ('every row: tp 1 · dp 64'); each row
    becomes a block of 'head value' pairs wrapped at words (a table folded to a character a line says nothing)."""
    headers, rows = list(block.headers), [[str(c) for c in r] for r in block.rows]
    full = [r for r in rows if len(r) == len(headers)]
    fitted = _fitted(console, headers, rows)
    constant: list[int] = []
    if fitted is None and len(full) >= 2 and len(full) == len(rows):
        constant = [i for i in range(1, len(headers)) if len({r[i] for r in rows}) == 1]
        keep = [i for i in range(len(headers)) if i not in constant]
        if constant and len(keep) >= 2:
            fitted = _fitted(console, [headers[i] for i in keep], [[r[i] for i in keep] for r in rows])
    if block.title:
        console.print(Text(block.title, style="italic"))
    if constant:
        console.print(Text("every row: " + " · ".join(f"{headers[i]} {rows[0][i]}" for i in constant)),
                      overflow="fold")
    if fitted is None:
        for row in rows:
            pairs = [f"{h} {c}" for i, (h, c) in enumerate(zip(headers, row)) if i and c and i not in constant]
            console.print(Text(f"{row[0]}: " + " · ".join(pairs) if row else ""), overflow="fold")
    else:
        table, below_head, below = fitted
        console.print(table)
        if below:
            console.print(f"{below_head}:")
            for first, text in below:
                console.print(f"  {first}: {text}")
    if block.note:
        console.print(block.note)


def _fitted(console: Console, headers: list[str], rows: list[list[str]]
            ) -> tuple[Table, str, list[tuple[str, str]]] | None:
    """The table with its figures whole, or with its last text column moved below it (that column's head and
    (first cell, text) pairs); None when neither fits. A table whose only cells are names and text folds."""
    longest = [max([len(row[i]) for row in rows if i < len(row)] + [len(h)]) for i, h in enumerate(headers)]
    cells = [max([len(row[i]) for row in rows if i < len(row)] + [0]) for i in range(len(headers))]
    short = {i for i, n in enumerate(cells) if n <= 12}
    if _needed(headers, rows, longest, short) <= console.width:
        return _built(console, "", headers, rows, longest, short), "", []
    if len(headers) > 2 and cells[-1] > 24 and \
            _needed(headers[:-1], [r[:-1] for r in rows], longest[:-1], short) <= console.width:
        below = [(r[0], r[-1]) for r in rows if len(r) == len(headers) and r[-1]]
        return _built(console, "", headers[:-1], [r[:-1] for r in rows], longest[:-1], short), headers[-1], below
    if not short - {0}:  # nothing to keep whole: names and text, which fold at words
        return _built(console, "", headers, rows, longest, set()), "", []
    return None
