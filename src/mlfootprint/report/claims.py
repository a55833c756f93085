"""The claims table: terminal, Markdown and self-contained HTML, each row linking to its source."""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import textwrap
from typing import Any

from rich.console import Console
from rich.table import Table

from ..core.version import __version__
from . import units
from .markdown import md_escape, md_link, safe_url
from .render import renderer, text_width
from .schema import Report

_VERDICT_MARK = {"reproduced": "✓ reproduced", "consistent": "= consistent", "differs": "✗ differs",
                 "not checkable": "? not checkable", "error": "! error"}


def fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "MFU":
        return f"{100 * value:.1f}%"
    if unit == "FLOPs":  # no exponent notation (README, "Conventions"): 314 ZFLOP, 1.4 G parameters
        return units.si(value, "FLOP", digits=3)
    if unit == "parameters":
        return f"{units.si(value, digits=3)} parameters"
    if unit == "x":
        return f"{value:.3g}×"
    if unit.endswith("/s") and abs(value) >= 1e4:
        return units.si(value, unit, digits=3)
    return f"{units.plain(value)} {unit}"


def fmt_diff(d: float | None) -> str:
    return "—" if d is None else f"{100 * d:+.1f}%"


def _rows(report: Report) -> dict[str, dict[str, Any]]:
    return (report.get("claims") or {}).get("rows") or {}


def predict_summary(report: Report) -> str:
    """One line on the published runs held against ``predict`` ('' when none was checked)."""
    sec = report.get("claims") or {}
    if not sec.get("predict_rows"):
        return ""
    return (f"predict against {sec['predict_rows']} published training runs: median |difference| "
            f"{100 * sec['predict_median_abs_difference']:.1f}%, worst {100 * sec['predict_worst_abs_difference']:.1f}%")


@renderer("table", verb="claims")
def render_claims_table(report: Report, args: argparse.Namespace | None = None) -> str:
    return to_text(_rows(report), predict_summary(report), text_width(args, 140))


@renderer("md", verb="claims")
def render_claims_markdown(report: Report, args: argparse.Namespace | None = None) -> str:
    return to_markdown(_rows(report), predict_summary(report))


@renderer("html", verb="claims")
def render_claims_html(report: Report, args: argparse.Namespace | None = None) -> str:
    return to_html(_rows(report), predict_summary(report))


# below this many columns the claims come as blocks, not a table (six columns left a few characters each)
TABLE_MIN_WIDTH = 120


def to_text(rows: dict[str, dict[str, Any]], summary: str = "", width: int = 140) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None, highlight=False, markup=False)
    if width >= TABLE_MIN_WIDTH:
        table = Table(title="Published claims, recomputed by mlfootprint", title_justify="left", show_lines=True)
        # figures and verdicts on one line; the claim and the how / why share what is left, words unbroken
        table.add_column("claim", ratio=3, overflow="fold", min_width=24)
        for h in ("published", "ours", "diff", "verdict"):
            table.add_column(h, no_wrap=True)
        table.add_column("how / why", ratio=4, overflow="fold", min_width=24)
        for cid, r in rows.items():
            table.add_row(f"{cid}\n{r['claim']}\n{r['source']}\n{r['url']}", fmt_value(r["published"], r["unit"]),
                          fmt_value(r["ours"], r["unit"]), fmt_diff(r["difference"]), _VERDICT_MARK[r["verdict"]],
                          r["detail"])
        console.print(table)
    else:  # a narrow terminal: one block per claim, its lines wrapped at words and indented
        lines = ["Published claims, recomputed by mlfootprint"]
        for cid, r in rows.items():
            lines.append("")
            for text, indent in ((f"{cid}: {r['claim']}", ""),
                                 (f"{_VERDICT_MARK[r['verdict']]} · published {fmt_value(r['published'], r['unit'])} "
                                  f"· ours {fmt_value(r['ours'], r['unit'])} · diff {fmt_diff(r['difference'])}", "  "),
                                 (f"how / why: {r['detail']}", "  "), (f"source: {r['source']} {r['url']}", "  ")):
                lines += textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "  ",
                                       break_long_words=True, break_on_hyphens=False)
        console.print("\n".join(lines))
    counts = _counts(rows)
    console.print(", ".join(f"{n} {k}" for k, n in counts.items()))
    if summary:
        console.print(summary)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _counts(rows: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts = {"reproduced": 0, "consistent": 0, "differs": 0, "not checkable": 0, "error": 0}
    for r in rows.values():
        counts[r["verdict"]] += 1
    return {k: n for k, n in counts.items() if n or k != "error"}


def to_markdown(rows: dict[str, dict[str, Any]], summary: str = "") -> str:
    lines = ["# Published claims, recomputed by mlfootprint", "",
             "| claim | published | ours | diff | verdict | how / why |", "|---|---|---|---|---|---|"]
    for cid, r in rows.items():
        link = md_link(r["source"], r["url"])
        lines.append(f"| **{md_escape(cid)}**: {md_escape(r['claim'])} ({link}) | {fmt_value(r['published'], r['unit'])} | "
                     f"{fmt_value(r['ours'], r['unit'])} | {fmt_diff(r['difference'])} | {_VERDICT_MARK[r['verdict']]} | {md_escape(r['detail'])} |")
    lines += ["", ", ".join(f"{n} {k}" for k, n in _counts(rows).items())] + (["", md_escape(summary)] if summary else [])
    return "\n".join(lines) + "\n"


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2430}table{border-collapse:collapse;width:100%}\n"
        "td,th{border-bottom:1px solid #dde2ea;padding:.5em;vertical-align:top;text-align:left}th{background:#f3f5f9}\n"
        "tr.reproduced td:nth-child(5){color:#146c2e}tr.consistent td:nth-child(5){color:#1f4e8c}"
        "tr.error td:nth-child(5){color:#b00020;font-weight:bold}tr.differs td:nth-child(5){color:#a3330f}"
        "tr.not-checkable td:nth-child(5){color:#6b6f7a}")
# The page needs its one <style> element and nothing else: no script, image, font, frame or fetch.
CLAIMS_CSP = ("default-src 'none'; "
              f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
              "base-uri 'none'; form-action 'none'")


def to_html(rows: dict[str, dict[str, Any]], summary: str = "") -> str:
    e = html.escape
    body = []
    for cid, r in rows.items():
        url = safe_url(r["url"])  # only http(s): a javascript: or data: URL from a claims file is no link
        src = f'<a href="{e(url, quote=True)}" rel="noopener noreferrer">{e(r["source"])}</a>' if url else e(r["source"])
        verdict = r["verdict"].replace(" ", "-")
        body.append(
            f'<tr class="{verdict}"><td><b>{e(cid)}</b><br>{e(r["claim"])}<br><small>{src}</small></td>'
            f'<td>{e(fmt_value(r["published"], r["unit"]))}</td><td>{e(fmt_value(r["ours"], r["unit"]))}</td>'
            f'<td>{e(fmt_diff(r["difference"]))}</td><td>{e(_VERDICT_MARK[r["verdict"]])}</td><td>{e(r["detail"])}</td></tr>')
    counts = ", ".join(f"{n} {k}" for k, n in _counts(rows).items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="mlfootprint {e(__version__)}">
<meta http-equiv="Content-Security-Policy" content="{e(CLAIMS_CSP)}"><title>mlfootprint claims</title>
<style>{_CSS}</style>
</head><body><h1>Published claims, recomputed by mlfootprint</h1><p>{e(counts)}</p>{f"<p>{e(summary)}</p>" if summary else ""}
<table><thead><tr><th>claim</th><th>published</th><th>ours</th><th>diff</th><th>verdict</th><th>how / why</th></tr></thead>
<tbody>{''.join(body)}</tbody></table></body></html>
"""


