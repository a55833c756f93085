"""``table``: the efficiency table of a paper, one row per saved report.

Each column takes the measured figure when the report has one and the predicted (counted or modelled) one
otherwise, and keeps which it was, so the rendered table can mark modelled cells.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import UserError, suggest
from ..report.card import workload_line
from ..report.layout import lookup
from ..report.schema import Report
from ..report.sections import PaperTableColumn, PaperTableRow, PaperTableSection

# column key → (label, base unit, the figures it may come from, first found wins: measured before predicted)
COLUMNS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "params": ("Params", "parameters", ("params.total",)),
    "flops": ("FLOPs / step", "FLOP", ("flops.model",)),
    "flops_per_token": ("FLOPs / token", "FLOP", ("flops.per_token",)),
    "memory": ("Peak memory", "bytes", ("measured.peak_bytes", "memory.peak_bytes")),
    "step": ("Step time", "s", ("measured.step_s", "time.step_s")),
    "throughput": ("Throughput", "tokens/s", ("measured.tokens_per_s", "time.tokens_per_s")),
    "mfu": ("MFU", "fraction", ("measured.mfu", "time.mfu")),
    "energy": ("Energy", "J", ("measured.energy_j", "footprint.energy_j")),
    "co2e": ("CO2e", "gCO2e", ("footprint.co2e_g",)),
}
DEFAULT_COLUMNS = ("params", "flops", "memory", "step", "mfu", "energy", "co2e")


def table(files: Sequence[str | os.PathLike[str]] | Sequence[Report], *, columns: Sequence[str] | None = None,
          labels: Sequence[str] | None = None) -> Report:
    """One compact efficiency table over several reports: the paper table.

    Args:
        files: report files written with ``--format json`` (or Report objects), one row each, in order.
        columns: which columns, in order (default: params, flops, memory, step, mfu, energy, co2e; also
            flops_per_token and throughput). A column no report has is left out.
        labels: the row names (default: each model's display name, or the file name when two would clash).

    Returns:
        A Report with a ``table`` section; ``to_latex()`` gives the booktabs table, one unit per column.

    Example:
        >>> rep = mf.table(["resnet50.json", "vit-b16.json"])
        >>> print(rep.to_latex())
    """
    if not files:
        raise UserError("table needs at least one report file (written with --format json)")
    keys = list(columns) if columns else list(DEFAULT_COLUMNS)
    for key in keys:
        if key not in COLUMNS:
            raise UserError(f"unknown column {key!r}; choose from {', '.join(COLUMNS)}.{suggest(key, COLUMNS)}")
    if labels is not None and len(labels) != len(files):
        raise UserError(f"{len(labels)} labels for {len(files)} reports; give one --label per report, in order")
    reports = [f if isinstance(f, Report) else Report.load(f) for f in files]
    sources = [f"report{i + 1}" if isinstance(f, Report) else str(f) for i, f in enumerate(files)]
    names = list(labels) if labels is not None else _default_labels(reports, sources)
    rows = [_row(rep, name, source, keys) for rep, name, source in zip(reports, names, sources)]
    present = [k for k in keys if any(r.values.get(k) is not None for r in rows)]
    if not present:
        raise UserError(f"none of the reports has any of the columns {', '.join(keys)}; pass reports of analyze, "
                        "count, memory, predict, bench or track")
    for r in rows:
        r.values = {k: r.values.get(k) for k in present}
    rep = Report(verb="table")
    rep.add(PaperTableSection(columns=[PaperTableColumn(k, COLUMNS[k][0], COLUMNS[k][1]) for k in present], rows=rows))
    scopes = {r.footprint_scope for r in rows if r.footprint_scope}
    if len(scopes) > 1 and any(k in present for k in ("energy", "co2e")):
        rep.assume("energy and CO2e cover different scopes in these reports (" + ", ".join(sorted(scopes)) +
                   "); compare them per row, not across rows")
    if len({r.workload for r in rows}) > 1:
        rep.assume("the rows are different workloads: " + "; ".join(f"{r.label}: {r.workload}" for r in rows))
    return rep


def _default_labels(reports: list[Report], sources: list[str]) -> list[str]:
    names = []
    for rep, source in zip(reports, sources):
        model = rep.get("model") or {}
        names.append(str(model.get("display_name") or model.get("name") or Path(source).stem))
    if len(set(names)) < len(names):  # the same model twice: the files tell the rows apart
        return [Path(s).stem for s in sources]
    return names


def _row(rep: Report, label: str, source: str, keys: list[str]) -> PaperTableRow:
    row = PaperTableRow(label=label, source=source)
    for key in keys:
        for path in COLUMNS[key][2]:
            value = lookup(rep, path)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row.values[key] = value
                row.paths[key] = path
                row.provenance[key] = rep.provenance.get(path) or ("measured" if path.startswith("measured.") else "")
                break
    row.footprint_scope = (rep.get("footprint") or {}).get("scope")
    row.workload = workload_line(rep)
    return row
