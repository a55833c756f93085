"""Markdown renderer: GitHub-flavoured tables. The answer first (the card); ``--details`` for every block."""
from __future__ import annotations

import argparse
import re

from . import card
from .layout import Block, blocks, pred_measured_block, predicted_vs_measured, ranked_layouts
from .render import renderer
from .schema import Report


_MD_SPECIAL = str.maketrans({
    "\\": "\\\\", "|": "\\|", "\n": " ", "\r": " ",
    # raw HTML (<script>, <img onerror>) and entities render as the text they are
    "&": "&amp;", "<": "&lt;", ">": "&gt;",
    # no link or image can start in text from a report: [x](javascript:…) stays text
    "[": "\\[", "]": "\\]",
})


def md_escape(text: object) -> str:
    """Text from a report as Markdown text: never HTML, never a link, one table cell."""
    return str(text).translate(_MD_SPECIAL)


def safe_url(url: object) -> str | None:
    """``url`` when it is an absolute http(s) URL without spaces, quotes or angle brackets; otherwise None
    (``javascript:``, ``data:``, relative and malformed URLs never become links)."""
    text = str(url or "").strip()
    if not re.fullmatch(r"https?://[^\s<>\"'`\\\x00-\x1f\x7f]+", text, flags=re.IGNORECASE):
        return None
    return text


def md_link(text: object, url: object) -> str:
    """A Markdown link to an http(s) URL; any other URL is left out and the text stays plain."""
    target = safe_url(url)
    if target is None:
        return md_escape(text)
    # parentheses and a table's '|' would end the link or the cell: percent-encoded, as URLs allow
    target = target.replace("(", "%28").replace(")", "%29").replace("|", "%7C")
    return f"[{md_escape(text)}]({target})"


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
        heads, ranked = ranked_layouts(report)
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
