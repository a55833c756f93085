"""``compare``: saved reports side by side, with the Pareto front of two figures."""
from __future__ import annotations

import os
from collections.abc import Sequence

from ..report.compare import CONVENTIONS, compare_reports
from ..report.schema import Report
from ..report.sections import CompareSection


def compare(files: Sequence[str | os.PathLike[str]] | Sequence[Report], *, metrics: Sequence[str] = (),
            x: str | None = None, y: str | None = None, maximize: Sequence[str] = (),
            minimize: Sequence[str] = (), labels: Sequence[str] | None = None) -> Report:
    """Compare reports (JSON files written with ``--format json``, or Report objects): their main figures side
    by side and the Pareto-optimal reports on two figures.

    Args:
        files: two or more report files (or Reports).
        metrics: figures of your own, ``"accuracy=81.2"``, one per report in order (``nan`` for none).
        x, y: the Pareto axes, by dotted path (``footprint.co2e_g``) or metric name.
        maximize, minimize: override which way is better for a figure.
        labels: names for Report objects (files are labelled by their names).

    Returns:
        A Report with a ``compare`` section.
    """
    reports = [f if isinstance(f, Report) else Report.load(f) for f in files]
    names = list(labels) if labels is not None else [str(f) if not isinstance(f, Report) else f"report{i + 1}"
                                                      for i, f in enumerate(files)]
    result = compare_reports(reports, names, metrics=metrics, x=x, y=y, maximize=maximize, minimize=minimize)
    rep = Report(verb="compare")
    rep.add(CompareSection(reports=result.reports, figures=result.figures, pareto=result.pareto or None))
    rep.conventions = dict(CONVENTIONS)
    for text in result.assumptions:
        rep.assume(text)
    return rep
