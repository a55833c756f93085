"""Terminal and Markdown forms of ``history list``, ``history add`` and ``history diff`` reports."""
from __future__ import annotations

import argparse
import io
import textwrap
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from . import units
from .history import same_value
from .markdown import md_escape
from .render import renderer, text_width
from .schema import Report

_LIST_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    # (entry key, header, formatter)
    ("params_total", "params", units.params),
    ("flops_total", "FLOPs", lambda v: units.si(v, "FLOP")),
    ("peak_memory_bytes", "peak memory", lambda v: units.gb(v)),
    ("step_s", "step", lambda v: units.seconds(v)),
    ("mfu", "MFU", lambda v: f"{100 * v:.1f}%"),
    ("co2e_g", "CO2e", lambda v: units.by_key("co2e_g", v)),
)


def _section(report: Report) -> dict[str, Any]:
    return report.get("history") or {}


# ------------------------------------------------------------------------------------------ list


def _list_rows(entries: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    shown = [c for c in _LIST_COLUMNS if any(e.get(c[0]) is not None for e in entries)]
    headers = ["id", "added (UTC)", "verb", "model", "label"] + [h for _, h, _ in shown]
    rows = []
    for e in entries:
        row = [str(e["id"]), str(e["created_at"]).replace("T", " ").rstrip("Z"), e["verb"], e.get("model") or "—",
               e.get("label") or ""]
        row += ["—" if e.get(key) is None else fmt(e[key]) for key, _, fmt in shown]
        rows.append(row)
    return headers, rows


@renderer("table", verb="history list")
def list_table(report: Report, args: argparse.Namespace | None = None) -> str:
    h = _section(report)
    headers, rows = _list_rows(h.get("entries") or [])
    if not rows:
        return f"mlfootprint history: no entries in {h.get('db')}" + (" match" if h.get("filters") else "") + "."
    return rich_table(f"mlfootprint history: {h.get('db')}", headers, rows, text_width(args, 160), blocks=True)


@renderer("md", verb="history list")
def list_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    h = _section(report)
    headers, rows = _list_rows(h.get("entries") or [])
    return f"# mlfootprint history: {md_escape(str(h.get('db')))}\n\n" + (md_table(headers, rows) if rows else "No entries.")


# ------------------------------------------------------------------------------------------ add


def _added_lines(h: dict[str, Any]) -> list[str]:
    lines = []
    for item in h.get("added") or []:
        what = f"{item['verb']} report" + (f" of {item['model']}" if item.get("model") else "")
        lines.append(f"added {item['file']} ({what}) as entry {item['id']} to {h.get('db')}")
    return lines


@renderer("table", verb="history add")
def add_table(report: Report, args: argparse.Namespace | None = None) -> str:
    return "\n".join(["mlfootprint history add"] + _added_lines(_section(report)))


@renderer("md", verb="history add")
def add_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    return "# mlfootprint history add\n\n" + "\n".join("- " + md_escape(line) for line in _added_lines(_section(report)))


# ------------------------------------------------------------------------------------------ diff


def _describe(e: dict[str, Any]) -> str:
    parts = [f"#{e['id']}", e["verb"]]
    if e.get("model"):
        parts.append(e["model"])
    if e.get("label"):
        parts.append(f"[{e['label']}]")
    parts.append(f"added {e['created_at']}")
    return " ".join(parts)


def _leaf_key(path: str) -> tuple[str, str]:
    section = path.split(".", 1)[0].split("[", 1)[0]
    key = path.rsplit(".", 1)[-1]
    if key.endswith("]"):
        key = key.rsplit("[", 1)[-1].rstrip("]")
    return key, section


def _value(path: str, v: Any) -> str:
    if v is None:
        return "—"
    key, section = _leaf_key(path)
    return units.by_key(key, v, section)


def _change(row: dict[str, Any]) -> str:
    a, b, rel = row.get("a"), row.get("b"), row.get("rel_change")
    if a is None and b is not None:
        return "only in B"
    if b is None and a is not None:
        return "only in A"
    if rel is not None:
        return "same" if rel == 0 else f"{rel:+.2%}"
    return "same" if same_value(a, b) else "changed"


def _diff_parts(h: dict[str, Any]) -> tuple[str, list[str], list[str], list[list[str]]]:
    ea, eb = h["a"], h["b"]
    rows = h.get("rows") or []
    headers = ["figure", f"A (#{ea['id']})", f"B (#{eb['id']})", "change"]
    body = [[r["path"], _value(r["path"], r.get("a")), _value(r["path"], r.get("b")), _change(r)] for r in rows]
    intro = [f"A: {_describe(ea)}", f"B: {_describe(eb)}"]
    if not rows:
        intro.append("No figures to compare." if h.get("all_figures") else "No figures differ.")
    return f"#{ea['id']} → #{eb['id']}", intro, headers, body


@renderer("table", verb="history diff")
def diff_table(report: Report, args: argparse.Namespace | None = None) -> str:
    h = _section(report)
    title, intro, headers, body = _diff_parts(h)
    text = "\n".join([f"mlfootprint history diff {title}"] + intro)
    if body:
        text += "\n" + rich_table("Figures" + ("" if h.get("all_figures") else " that differ"), headers, body,
                                   text_width(args, 160))
    return text


@renderer("md", verb="history diff")
def diff_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    title, intro, headers, body = _diff_parts(_section(report))
    text = f"# mlfootprint history diff {title}\n\n" + "\n".join(f"- {md_escape(line)}" for line in intro)
    return text + ("\n\n" + md_table(headers, body) if body else "")


# ------------------------------------------------------------------------------------------ helpers


def rich_table(title: str, headers: list[str], rows: list[list[str]], width: int = 160, blocks: bool = False) -> str:
    """A table of ``width`` columns at most; with ``blocks``, a table too wide for it comes as one wrapped block
    per row ('header value' pairs) instead of columns of a few characters."""
    natural = sum(max([len(h)] + [len(r[i]) for r in rows]) + 3 for i, h in enumerate(headers)) + 1
    if blocks and natural > width:
        lines = textwrap.wrap(title, width, subsequent_indent="  ")
        for r in rows:
            lines.append("")
            lines += textwrap.wrap(" · ".join(f"{h} {c}" for h, c in zip(headers, r) if c not in ("", "—")), width,
                                   subsequent_indent="  ", break_on_hyphens=False)
        return "\n".join(lines) + "\n"
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None, highlight=False, markup=False)
    table = Table(title=title, title_justify="left")
    for h in headers:
        # ids, dates, verbs and figures on one line (a date folded as 2026/-12-/05); names and paths fold
        fold = h in ("model", "label", "figure") or h.startswith(("A (", "B ("))
        table.add_column(h, overflow="fold", no_wrap=not fold)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
