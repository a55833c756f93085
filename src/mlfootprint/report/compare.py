"""Compare reports: their main figures side by side and the Pareto front of any two figures.

A figure is named by its dotted path in the report (``flops.model``,
``time.step_s``, ``footprint.co2e_g``) or, for a user metric given with
``--metric NAME=VALUE``, by its name (``accuracy``, stored as
``metrics.accuracy``). Which way is better: lower for cost-like figures (params,
FLOPs, bytes, seconds, joules, grams, litres, dollars), higher for throughput,
utilization and user metrics, unless told otherwise.

The ``compare`` verb puts the result in a report's ``compare`` section, so a comparison saved as JSON
re-renders with ``mlfootprint report`` like any other report.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError, suggest
from . import units
from .layout import flat_figures, provenance_of
from .schema import Report

# The rows of the side-by-side table, when at least one report has them.
MAIN_FIGURES = (
    "params.total", "params.active",
    "flops.model", "flops.per_token", "flops.total",
    "memory.peak_bytes", "memory.max_batch",
    "time.step_s", "time.tokens_per_s", "time.mfu", "time.hfu", "time.train_s", "time.device_hours",
    "measured.step_s", "measured.tokens_per_s", "measured.peak_bytes", "measured.mfu", "measured.energy_j",
    "footprint.energy_j", "footprint.co2e_g", "footprint.embodied_co2e_g", "footprint.total_co2e_g",
    "footprint.water_l", "footprint.cost_usd",
    # a plan report's best layout
    "plan.step_s", "plan.tokens_per_s", "plan.mfu", "plan.peak_bytes",
)

# Leaf keys where more is better; every other report figure is cost-like (less is better).
HIGHER_IS_BETTER = frozenset({"tokens_per_s", "samples_per_s", "mfu", "hfu", "max_batch",
                              "params_served_per_gco2e", "throughput"})

# Default axes of the Pareto plot: the first two present (a user metric, when given, is y).
_DEFAULT_AXES = ("footprint.co2e_g", "footprint.energy_j", "measured.energy_j", "time.step_s", "measured.step_s",
                 "memory.peak_bytes", "measured.peak_bytes", "flops.model", "params.total", "plan.step_s",
                 "plan.peak_bytes")

_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def labels_for(reports: Sequence[Report], files: Sequence[str]) -> list[str]:
    """Short unique names: the model names when they differ, else the file names."""
    names = [str((r.get("model") or {}).get("name") or "") for r in reports]
    if all(names) and len(set(names)) == len(names):
        return names
    stems = [Path(f).stem or f"#{i + 1}" for i, f in enumerate(files)]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{s} #{i + 1}" for i, s in enumerate(stems)]


def parse_metrics(specs: Sequence[str], n_reports: int) -> dict[str, list[float | None]]:
    """--metric NAME=VALUE, given once per report in the order of the reports ('nan' for none)."""
    values: dict[str, list[float | None]] = {}
    for spec in specs:
        name, sep, raw = str(spec).partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise UserError(f"--metric expects NAME=VALUE (e.g. --metric accuracy=81.2), got {spec!r}")
        if not _METRIC_NAME.match(name):
            raise UserError(f"--metric name {name!r} must start with a letter and use letters, digits, _ . or -")
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"--metric {name}: {raw!r} is not a number (use nan for a report without it)") from None
        if math.isinf(value):
            raise UserError(f"--metric {name}: {raw!r} is not a finite number")
        values.setdefault(name, []).append(None if math.isnan(value) else value)
    for name, vals in values.items():
        if len(vals) != n_reports:
            raise UserError(
                f"--metric {name} is given {len(vals)} time(s) for {n_reports} reports; give it once per report, "
                "in the order of the reports (nan for a report without it)"
            )
    return values


def direction(path: str, maximize: set[str], minimize: set[str]) -> str:
    if path in maximize:
        return "higher"
    if path in minimize:
        return "lower"
    if path.startswith("metrics."):
        return "higher"
    return "higher" if path.rsplit(".", 1)[-1] in HIGHER_IS_BETTER else "lower"


def resolve_figure(name: str, available: Sequence[str], what: str = "figure", text: Sequence[str] = ()) -> str:
    """A figure's full path from what the user typed; UserError naming the closest ones if unknown (``text``: the
    reports' fields that are not numbers, named as such)."""
    name = str(name).strip()
    avail = list(dict.fromkeys(available))
    if name in avail:
        return name
    if f"metrics.{name}" in avail:
        return f"metrics.{name}"
    ends = [p for p in avail if p.endswith("." + name)]
    if len(ends) == 1:
        return ends[0]
    if len(ends) > 1:
        raise UserError(f"{what} {name!r} is ambiguous: {', '.join(ends[:6])}; give the full dotted path")
    if name in text:
        raise UserError(f"{what} {name!r} is text, not a number: a Pareto front and a ranking need figures; "
                        "pick a number (e.g. time.step_s, memory.peak_bytes)")
    shown = [p for p in avail if not p.startswith(("workload.", "model.", "footprint.inputs."))] or avail
    hint = suggest(name, avail + [p[len("metrics."):] for p in avail if p.startswith("metrics.")])
    listing = ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "")
    raise UserError(f"unknown {what} {name!r}: no report has it.{hint} Figures the reports have: {listing}")


def pareto_front(xs: Sequence[float | None], ys: Sequence[float | None], x_better: str, y_better: str
                 ) -> tuple[list[int], list[int | None]]:
    """Indices of the Pareto-optimal points, and for each point the index of one point that dominates it.

    A point is dominated when another is at least as good on both figures and strictly
    better on one; points missing either figure take no part (dominated_by is None and
    they are not optimal).
    """
    sx = 1.0 if x_better == "lower" else -1.0
    sy = 1.0 if y_better == "lower" else -1.0
    pts = [(sx * x, sy * y) if x is not None and y is not None else None for x, y in zip(xs, ys)]
    optimal: list[int] = []
    dominated_by: list[int | None] = [None] * len(pts)
    for i, p in enumerate(pts):
        if p is None:
            continue
        best: int | None = None
        for j, q in enumerate(pts):
            if j == i or q is None:
                continue
            if q[0] <= p[0] and q[1] <= p[1] and (q[0] < p[0] or q[1] < p[1]):
                # prefer the dominating point that is itself best (smallest sum of ranks): stable, readable
                if best is None or (q[0], q[1]) < (pts[best][0], pts[best][1]):  # type: ignore[index]
                    best = j
        dominated_by[i] = best
        if best is None:
            optimal.append(i)
    return optimal, dominated_by


@dataclass
class Comparison:
    """Several reports side by side: the ``compare`` section's content and what it assumed."""

    reports: list[dict[str, Any]]
    figures: list[dict[str, Any]]
    pareto: dict[str, Any] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)


CONVENTIONS = {
    "better": "lower for cost-like figures (params, FLOPs, bytes, time, energy, CO2e, water, cost); higher for "
              "throughput, MFU/HFU and user metrics; --maximize/--minimize override",
    "Pareto-optimal": "no other report is at least as good on both figures and strictly better on one",
    "units": "JSON in base units with the unit in the key; GB = 1e9 bytes, GiB = 2^30 bytes",
}


def compare_reports(reports: Sequence[Report], files: Sequence[str], metrics: Sequence[str] = (),
                    x: str | None = None, y: str | None = None,
                    maximize: Sequence[str] = (), minimize: Sequence[str] = ()) -> Comparison:
    """The main figures of several saved reports side by side, and a Pareto front (see the module docstring)."""
    if len(reports) < 2:
        raise UserError("compare needs two or more reports (files written with --format json)")
    n = len(reports)
    labels = labels_for(reports, files)
    user = parse_metrics(metrics, n)
    flats = [flat_figures(r) for r in reports]
    for name, vals in user.items():
        for flat, v in zip(flats, vals):
            if v is not None:
                flat[f"metrics.{name}"] = v
    available = list(dict.fromkeys(p for flat in flats for p in flat))
    for name in user:
        if f"metrics.{name}" not in available:  # all nan: still a known name
            available.append(f"metrics.{name}")

    text = [p for r in reports for p, v in flat_figures(r, numeric_only=False).items() if isinstance(v, str)]
    max_set = {resolve_figure(m, available, "--maximize figure", text) for m in maximize}
    min_set = {resolve_figure(m, available, "--minimize figure", text) for m in minimize}
    both = max_set & min_set
    if both:
        raise UserError(f"{', '.join(sorted(both))} is given to both --maximize and --minimize; keep one")
    x_path = resolve_figure(x, available, "--x figure", text) if x else None
    y_path = resolve_figure(y, available, "--y figure", text) if y else None
    if x_path and y_path and x_path == y_path:
        raise UserError(f"--x and --y both name {x_path}; a Pareto front needs two different figures")
    x_path, y_path = _default_axes(x_path, y_path, flats, [f"metrics.{m}" for m in user])

    rows = [p for p in MAIN_FIGURES if any(p in f for f in flats)]
    if all(f.get("params.active") == f.get("params.total") for f in flats):
        rows = [p for p in rows if p != "params.active"]  # dense models: the same row twice
    rows += [f"metrics.{m}" for m in user]
    for extra in (x_path, y_path, *sorted(max_set), *sorted(min_set)):
        if extra and extra not in rows:
            rows.append(extra)

    figures = []
    for path in rows:
        key = path.rsplit(".", 1)[-1]
        section = path.split(".", 1)[0]
        figures.append({
            "path": path,
            "better": direction(path, max_set, min_set),
            "unit": "" if section == "metrics" else units.unit_of(key, section),
            "values": [f.get(path) for f in flats],
            "provenance": ["given" if section == "metrics" and f.get(path) is not None
                           else (provenance_of(r, path) if f.get(path) is not None else "")
                           for r, f in zip(reports, flats)],
        })

    out = Comparison(
        reports=[{"label": lab, "file": str(f), "model": (r.get("model") or {}).get("name"), "verb": r.verb}
                 for lab, f, r in zip(labels, files, reports)],
        figures=figures)
    if x_path and y_path:
        xs = [f.get(x_path) for f in flats]
        ys = [f.get(y_path) for f in flats]
        xb, yb = direction(x_path, max_set, min_set), direction(y_path, max_set, min_set)
        optimal, dominated_by = pareto_front(xs, ys, xb, yb)
        status = []
        for i in range(n):
            if xs[i] is None or ys[i] is None:
                missing = " and ".join(p for p, v in ((x_path, xs[i]), (y_path, ys[i])) if v is None)
                status.append(f"no data ({missing} missing)")
            elif i in optimal:
                status.append("optimal")
            else:
                status.append(f"dominated by {labels[dominated_by[i]]}")  # type: ignore[index]
        out.pareto = {
            "x": x_path, "y": y_path, "x_better": xb, "y_better": yb,
            "x_values": xs, "y_values": ys,
            "optimal": [labels[i] for i in optimal], "optimal_index": optimal, "status": status,
        }
    else:
        out.assumptions.append("no Pareto front: the reports do not share two figures to plot "
                               "(name them with --x and --y)")
    out.assumptions += _merged_assumptions(reports, labels)
    return out


def _default_axes(x: str | None, y: str | None, flats: list[dict[str, Any]], metric_paths: list[str]
                  ) -> tuple[str | None, str | None]:
    def shared(p: str) -> bool:
        return sum(p in f for f in flats) >= 2

    costs = [p for p in _DEFAULT_AXES if shared(p)]
    metrics = [p for p in metric_paths if shared(p)]
    if y is None:
        pool = metrics + [p for p in costs if p != x]
        if x is None and not metrics:
            pool = costs[1:]  # x takes the first cost below
        y = pool[0] if pool else None
    if x is None:
        pool = [p for p in costs if p != y]
        x = pool[0] if pool else None
    return x, y


def _merged_assumptions(reports: Sequence[Report], labels: Sequence[str]) -> list[str]:
    everyone = set.intersection(*(set(r.assumptions) for r in reports)) if reports else set()
    out = [f"all reports: {text}" for text in reports[0].assumptions if text in everyone]
    for lab, r in zip(labels, reports):
        out += [f"{lab}: {text}" for text in r.assumptions if text not in everyone]
    return list(dict.fromkeys(out))
