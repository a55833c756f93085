r"""LaTeX renderer: booktabs tables a paper can ``\input``.

The output is a fragment (no preamble): a summary table of the headline
figures, then one table per block of the report (or, for a comparison, the
side-by-side table a paper wants). It needs ``\usepackage{booktabs}``; every
string from the report is escaped, so model names and paths with ``%``, ``_``,
``&``, ``#``, ``$``, braces, ``~``, ``^`` or ``\`` are safe.
"""
from __future__ import annotations

import argparse
import re

from ..core.version import __version__
from . import card, layout
from .layout import Block
from .render import renderer
from .schema import Report

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "%": r"\%",
    "_": r"\_",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    # Characters the default LaTeX fonts lack or that read better as LaTeX.
    "—": "---",
    "–": "--",
    "…": r"\ldots{}",
    "µ": r"\textmu{}",
    "×": r"\texttimes{}",
    "±": r"\textpm{}",
    "²": r"\texttwosuperior{}",
    "³": r"\textthreesuperior{}",
    "→": r"$\rightarrow$",
    "←": r"$\leftarrow$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "≈": r"$\approx$",
    "−": "-",
    "--": "-{}-{}",  # '--seq' stays two hyphens, not an en dash
    "\n": " ",
    "\r": " ",
    "\t": " ",
}
_SPECIAL_RE = re.compile("|".join(re.escape(k) for k in sorted(_SPECIAL, key=len, reverse=True)))
_SCIENTIFIC = re.compile(r"(?<![\w.])([0-9]+(?:\.[0-9]+)?)e([+-]?)0*([0-9]+)(?![\w.])")


def tex_escape(text: object) -> str:
    """Any string as LaTeX text that typesets as itself."""
    escaped = _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group(0)], str(text))
    # 3.1e+23 typeset as a number: $3.1\times10^{23}$
    return _SCIENTIFIC.sub(lambda m: rf"${m.group(1)}\times10^{{{'-' if m.group(2) == '-' else ''}{m.group(3)}}}$",
                           escaped)


def _comment(text: object) -> str:
    # A comment runs to the end of the line: only line breaks could escape it.
    return "% " + " ".join(str(text).split())


_STAR = r"$^{\ast}$"
_NUMBERISH = re.compile(r"^[\s$~+\-−]*[0-9]")


def _colspec(block: Block) -> str:
    cols = []
    for j, head in enumerate(block.headers):
        cells = [row[j] for row in block.rows if j < len(row) and row[j] not in ("", "—", "n/a")]
        longest = max((len(c) for c in cells), default=0)
        if j > 0 and longest > 60:
            cols.append(r"p{0.62\linewidth}")
        elif j > 0 and cells and sum(bool(_NUMBERISH.match(c)) for c in cells) >= 0.8 * len(cells):
            cols.append("r")
        else:
            cols.append("l")
    return "".join(cols)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "table"


def _header_cell(h: str) -> str:
    if h.endswith(" *"):
        return tex_escape(h[:-2]) + _STAR
    return tex_escape(h)


def table_tex(block: Block, label: str, caption: str | None = None) -> list[str]:
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{tex_escape(caption or block.title)}}}",
        rf"\label{{tab:mlfootprint-{label}}}",
        rf"\begin{{tabular}}{{{_colspec(block)}}}",
        r"\toprule",
        " & ".join(_header_cell(h) for h in block.headers) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(block.rows):
        cells = [tex_escape(str(c).strip()) if str(c).strip() else "" for c in row]
        cells += [""] * (len(block.headers) - len(cells))
        if block.indent and block.indent[i]:
            cells[0] = rf"\hspace*{{{block.indent[i]}em}}" + cells[0]
        lines.append(" & ".join(cells) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    if block.note:
        note = tex_escape(block.note).replace("*", _STAR, 1)
        lines.append(rf"\par\smallskip{{\footnotesize {note}}}")
    lines.append(r"\end{table}")
    return lines


def _summary_block(report: Report) -> Block | None:
    items = layout.summary(report)
    if not items:
        return None
    rows = [[it.label, it.text, it.provenance] for it in items]
    return Block("Summary", ["figure", "value", "provenance"], rows)


def _summary_notes(report: Report) -> list[str]:
    """Under the summary table: the fit verdict and the assumptions that moved the numbers most."""
    notes = [card.fit_sentence(report)] if card.fit_sentence(report) else []
    keys = card.key_assumptions(report)
    if keys:
        notes.append("Assumptions: " + " ".join(f"({i + 1}) {a}" for i, a in enumerate(keys)))
    return notes


def _list_tex(title: str, items: list[str]) -> list[str]:
    # a list in the text flow, not a float: any number of assumptions breaks across pages
    lines = [rf"\paragraph{{{tex_escape(title)}}}", r"\begin{enumerate}\small"]
    lines += [rf"\item {tex_escape(a)}" for a in items]
    lines.append(r"\end{enumerate}")
    return lines


@renderer("latex")
def render_latex(report: Report, args: argparse.Namespace | None) -> str:
    """One table by default (the one-page summary a paper includes); ``--details`` adds the appendix."""
    depth = getattr(args, "depth", 2) if args is not None else 2
    show_ops = bool(getattr(args, "by_op", False)) if args is not None else False
    macs = bool(getattr(args, "macs", False)) if args is not None else False
    details = bool(getattr(args, "details", False)) if args is not None else False
    model = report.get("model") or {}
    name = model.get("name")
    out = [
        _comment(f"mlfootprint {__version__}: {report.verb} report" + (f" of {name}" if name else "")),
        r"% Needs \usepackage{booktabs} in the preamble. Include with \input{this-file}.",
    ]
    used: set[str] = set()

    def label_for(title: str) -> str:
        base = _slug(title)
        lab, n = base, 2
        while lab in used:
            lab, n = f"{base}-{n}", n + 1
        used.add(lab)
        return lab

    summary = _summary_block(report) if report.get("compare") is None else None
    if summary is not None:
        shown = model.get("display_name") or name
        caption = f"Efficiency summary of {shown}" if shown else "Efficiency summary"
        workload = card.workload_line(report)
        if workload:
            caption += f" ({workload})"
        block = Block(summary.title, summary.headers, summary.rows, note=" ".join(_summary_notes(report)))
        out.append("")
        out.extend(table_tex(block, label_for("summary"), caption))
        if not details:
            out.append(_comment("every breakdown and assumption: the same command with --details (an appendix)"))
            return "\n".join(out) + "\n"
        out.append("")
        out.append(_comment("appendix (--details)"))
    for key, text in report.conventions.items():
        out.append(_comment(f"convention, {key}: {text}"))
    for block in layout.blocks(report, depth=depth, show_ops=show_ops, macs=macs):
        if block.title == "Efficiency card":
            continue  # the summary table above
        if block.title == "Reports" and report.get("compare") is not None:
            for row in block.rows:
                out.append(_comment("report " + ": ".join(str(c) for c in row if c)))
            continue
        out.append("")
        if block.title == "Assumptions":
            out.extend(_list_tex(block.title, [row[1] for row in block.rows]))
            continue
        out.extend(table_tex(block, label_for(block.title)))
    return "\n".join(out) + "\n"
