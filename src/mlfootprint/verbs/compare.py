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
        metrics: figures of your own, ``"accuracy=81.2"``, one per report in order (``nan`` for none): for two
            reports, ``["accuracy=81.2", "accuracy=79.0"]``. Stored as ``metrics.<name>``; higher is better.
        x, y: the Pareto axes, by dotted path (``footprint.co2e_g``) or metric name. Default: ``x`` the first of
            ``footprint.co2e_g``, ``footprint.energy_j``, ``measured.energy_j``, ``time.step_s``,
            ``measured.step_s``, ``memory.peak_bytes``, ``measured.peak_bytes``, ``flops.model``,
            ``params.total`` that two reports share, ``y`` a given metric, else the next of that list; no front
            without two shared figures.
        maximize, minimize: override which way is better for a figure (by path or name; default: lower for
            cost-like figures, higher for throughput, MFU/HFU, ``max_batch`` and your metrics).
        labels: names for Report objects (files are labelled by their names). Given, they replace the file
            names; a report is labelled by its model name when the model names all differ.

    Returns:
        A Report with a ``compare`` section: ``reports`` (per report: ``label``, ``file``, ``model``, ``verb``),
        ``figures`` (per main figure: ``path``, ``better`` (``"lower"``/``"higher"``), ``unit``, ``values`` and
        ``provenance``, one per report) and ``pareto`` (``x``, ``y``, ``x_values``, ``y_values``, ``optimal``:
        the labels of the Pareto-optimal reports, ``status`` per report); ``pareto`` is absent without two
        shared figures. Fewer than two reports raise :class:`~mlfootprint.core.errors.UserError`.

    Example:
        >>> rep = mf.compare(["llama-2-7b-a100.json", "llama-2-7b-h100.json"], x="time.step_s",
        ...                  y="footprint.co2e_g")
        >>> rep.sections["compare"]["pareto"]["optimal"]
        >>> a = mf.count("gpt2", mf.Workload(seq=1024))
        >>> b = mf.count("gpt2-medium", mf.Workload(seq=1024))
        >>> rep = mf.compare([a, b], metrics=["accuracy=30.1", "accuracy=35.0"], x="params.total", y="accuracy")
        >>> rep.sections["compare"]["pareto"]["optimal"]
        ['gpt2', 'gpt2-medium']
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
