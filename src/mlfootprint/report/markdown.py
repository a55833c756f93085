"""Markdown renderer: GitHub-flavoured tables. The answer first (the card); ``--details`` for every block."""
from __future__ import annotations

import argparse

from . import card
from .layout import Block, blocks, pred_measured_block, predicted_vs_measured
from .render import renderer
from .schema import Report


def md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


@renderer("md")
def render_markdown(report: Report, args: argparse.Namespace | None) -> str:
    depth = getattr(args, "depth", 2) if args is not None else 2
    show_ops = bool(getattr(args, "by_op", False)) if args is not None else False
    macs = bool(getattr(args, "macs", False)) if args is not None else False
    lines: list[str] = []
    name = (report.get("model") or {}).get("name")
    lines.append(f"# mlfootprint {report.verb}" + (f": {md_escape(name)}" if name else ""))
    details = bool(getattr(args, "details", True)) if args is not None else True
    view = card.VIEWS.get(report.verb)
    if view is not None and not details:
        lines.extend(_compact(report, view, depth, macs, show_ops))
        return "\n".join(lines) + "\n"
    for block in blocks(report, depth=depth, show_ops=show_ops, macs=macs, details=details):
        lines.extend(_table(block))
    if report.conventions:
        lines.append("")
        lines.append("Conventions: " + "; ".join(f"{md_escape(k)}: {md_escape(v)}" for k, v in report.conventions.items()))
    return "\n".join(lines) + "\n"


def _table(block: Block, heading: str = "##") -> list[str]:
    lines = ["", f"{heading} {md_escape(block.title)}", "",
             "| " + " | ".join(md_escape(h) for h in block.headers) + " |",
             "|" + "|".join("---" for _ in block.headers) + "|"]
    for i, row in enumerate(block.rows):
        cells = [md_escape(c) for c in row]
        if block.indent and cells:
            cells[0] = "&nbsp;&nbsp;" * block.indent[i] + cells[0].strip()
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _compact(report: Report, view: card.View, depth: int, macs: bool, by_op: bool) -> list[str]:
    """The same answer as the terminal card: workload, figures with provenance, fit, key assumptions."""
    lines: list[str] = []
    workload = card.workload_line(report)
    if workload:
        lines += ["", f"*{md_escape(workload)}*"]
    rows, _ = view(report)
    if rows:
        lines += _table(Block("Summary", ["figure", "value", "provenance", "note"], [list(r) for r in rows]))
    verdict = card.fit_sentence(report)
    if verdict:
        lines += ["", f"> **{md_escape(verdict)}**"]
    if report.verb == "plan":
        heads, ranked = card.ranked_layouts(report)
        lines += _table(Block("Layouts that fit, fastest first", heads, ranked[:10]))
    if report.verb == "count":
        for block in card.breakdown_blocks(report, depth, macs, by_op):
            lines += _table(block)
    pairs = predicted_vs_measured(report)
    if pairs:
        lines += _table(pred_measured_block(pairs))
    keys = card.key_assumptions(report)
    if keys:
        lines += ["", "Assumptions that moved these numbers most:", ""]
        lines += [f"{i + 1}. {md_escape(a)}" for i, a in enumerate(keys)]
    lines += ["", f"*{md_escape(card.footer(report))}*"]
    return lines
