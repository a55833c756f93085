"""The renderers of ``table``: one unit per column (the one that suits the column's values), modelled cells
marked, in the terminal, Markdown, LaTeX (booktabs, one float) and CSV (base units)."""
from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
from typing import Any

from .csv_out import cell
from .latex import tex_escape
from .markdown import md_escape
from .render import renderer
from .schema import Report
from .text import console_for, rich_table

# base unit → the display units, (scale, name), from the largest down
_SCALES: dict[str, tuple[tuple[float, str], ...]] = {
    "parameters": ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"), (1, "")),
    "FLOP": ((1e24, "YFLOP"), (1e21, "ZFLOP"), (1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"),
             (1e6, "MFLOP"), (1e3, "kFLOP"), (1, "FLOP")),
    "bytes": ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")),
    "s": ((86400, "days"), (3600, "h"), (1, "s"), (1e-3, "ms"), (1e-6, "µs")),
    "tokens/s": ((1e6, "M tokens/s"), (1e3, "k tokens/s"), (1, "tokens/s")),
    "fraction": ((0.01, "%"),),
    "J": ((3.6e9, "MWh"), (3.6e6, "kWh"), (3.6e3, "Wh"), (3.6, "mWh"), (3.6e-3, "µWh")),
    "gCO2e": ((1e6, "t"), (1e3, "kg"), (1, "g"), (1e-3, "mg"), (1e-6, "µg")),
}
MARK = "†"  # a modelled figure, not measured or counted


def column_unit(unit: str, values: list[float]) -> tuple[float, str]:
    """The display unit of a column: the largest at which the median value is at least 1."""
    scales = _SCALES[unit]
    present = [abs(v) for v in values if v]
    if not present:
        return scales[-1]
    median = statistics.median(present)
    for scale, name in scales:
        if median >= scale:
            return scale, name
    return scales[-1]


def _number(value: float) -> str:
    """3 significant digits, thousands separated, never in exponent notation."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def grid(report: Report) -> tuple[list[str], list[list[str]], bool]:
    """Header cells (label and unit), body cells (modelled ones marked) and whether any cell is marked."""
    section = report.get("table") or {}
    columns = section.get("columns") or []
    rows = section.get("rows") or []
    heads = ["Model"]
    cells: list[list[str]] = [[r["label"]] for r in rows]
    marked = False
    for col in columns:
        key = col["key"]
        scale, name = column_unit(col["unit"], [r["values"].get(key) for r in rows if r["values"].get(key) is not None])
        label = col["label"]
        scopes = {r.get("footprint_scope") for r in rows if r["values"].get(key) is not None}
        if key in ("energy", "co2e") and scopes == {"one step"}:
            label += " / step"
        elif key in ("energy", "co2e") and scopes == {"one generate call"}:
            label += " / generate call"
        heads.append(f"{label} ({name})" if name else label)
        for r, out in zip(rows, cells):
            value = r["values"].get(key)
            if value is None:
                out.append("—")
                continue
            mark = MARK if r.get("provenance", {}).get(key) == "modeled" else ""
            marked |= bool(mark)
            out.append(_number(value / scale) + mark)
    return heads, cells, marked


def _legend(marked: bool) -> str:
    return f"{MARK} modelled by mlfootprint; other figures counted or measured." if marked else ""


@renderer("table", verb="table")
def render_text(report: Report, args: argparse.Namespace | None) -> str:
    console, buf = console_for(args)
    heads, cells, marked = grid(report)
    console.print("mlfootprint table", markup=False, highlight=False)  # the title every text output opens with
    console.print(rich_table(heads, cells))
    for line in [_legend(marked), *report.assumptions]:
        if line:
            console.print(line)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


@renderer("md", verb="table")
def render_markdown(report: Report, args: argparse.Namespace | None) -> str:
    heads, cells, marked = grid(report)
    # a comment, not a title: the table is pasted into a paper's own text (and marks the file as ours to rewrite)
    lines = ["<!-- mlfootprint table -->",
             "| " + " | ".join(md_escape(h) for h in heads) + " |",
             "|---|" + "|".join("---:" for _ in heads[1:]) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in cells]
    notes = [n for n in [_legend(marked), *report.assumptions] if n]
    if notes:
        for n in notes:
            lines += ["", md_escape(n)]
    return "\n".join(lines) + "\n"


@renderer("latex", verb="table")
def render_latex(report: Report, args: argparse.Namespace | None) -> str:
    heads, cells, marked = grid(report)
    mark = r"$^\dagger$"
    lines = [r"% mlfootprint table. Needs \usepackage{booktabs}; include with \input{this-file}.",
             r"\begin{table}[htbp]", r"\centering", r"\small",
             r"\caption{Efficiency of the models compared}", r"\label{tab:mlfootprint-efficiency}",
             r"\begin{tabular}{l" + "r" * (len(heads) - 1) + "}", r"\toprule",
             " & ".join(tex_escape(h) for h in heads) + r" \\", r"\midrule"]
    for row in cells:
        lines.append(" & ".join(tex_escape(c).replace(MARK, mark) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = [n for n in [_legend(marked), *report.assumptions] if n]
    if notes:
        lines.append(r"\par\smallskip{\footnotesize " + " ".join(tex_escape(n).replace(MARK, mark) for n in notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


@renderer("csv", verb="table")
def render_csv(report: Report, args: argparse.Namespace | None) -> str:
    """Base units in the header, full-precision values: for a spreadsheet or a plotting script."""
    section = report.get("table") or {}
    columns = section.get("columns") or []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "source"] + [f"{c['key']} ({c['unit']})" for c in columns]
                    + [f"{c['key']} provenance" for c in columns])
    for r in section.get("rows") or []:
        values: list[Any] = [r["values"].get(c["key"]) for c in columns]
        writer.writerow([cell(r["label"]), cell(r["source"])] + ["" if v is None else v for v in values]
                        + [r.get("provenance", {}).get(c["key"], "") for c in columns])
    return buf.getvalue()
