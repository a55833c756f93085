"""``history``: save reports, list them, show one, diff two (a local SQLite store)."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..report.history import History
from ..report.schema import Report
from ..report.sections import HistorySection

Db = str | os.PathLike[str] | None


def history_add(files: Sequence[str | os.PathLike[str]], *, label: str | None = None, db: Db = None) -> Report:
    """Add report files (written with ``--format json``) to the history: all of them, or none on bad input."""
    reports = [(str(path), _load(path)) for path in files]  # read and check every file before adding any
    hist = History(db)
    added = []
    for path, report in reports:
        entry_id = hist.add(report, label=label)
        added.append({"file": path, "id": entry_id, "verb": report.verb,
                      "model": (report.get("model") or {}).get("name")})
    rep = Report(verb="history add")
    rep.add(HistorySection(db=str(hist.path), added=added))
    return rep


def history_list(*, model: str | None = None, verb: str | None = None, label: str | None = None,
                 since: str | None = None, limit: int | None = None, db: Db = None) -> Report:
    """Saved reports, newest first, with their headline figures (``history.entries``)."""
    hist = History(db)
    entries = hist.list(model=model, verb=verb, since=since, label=label, limit=limit)
    filters = {k: v for k, v in (("model", model), ("verb", verb), ("label", label), ("since", since)) if v is not None}
    rep = Report(verb="history list")
    rep.add(HistorySection(db=str(hist.path), entries=[e.to_dict() for e in entries], filters=filters or None))
    return rep


def history_show(entry_id: int, *, db: Db = None) -> Report:
    """One saved report, as it was saved."""
    return History(db).get(entry_id)


def history_diff(a: int, b: int, *, all_figures: bool = False, db: Db = None) -> Report:
    """Two saved reports figure by figure: A, B and (B − A) / |A| (``all_figures``: unchanged ones too)."""
    hist = History(db)
    ea, eb = hist.entry(a), hist.entry(b)
    rows = hist.diff(a, b, changed_only=not all_figures, include_text=True)
    rep = Report(verb="history diff")
    rep.add(HistorySection(db=str(hist.path), a=ea.to_dict(), b=eb.to_dict(), rows=[r.to_dict() for r in rows],
                           all_figures=all_figures))
    return rep


def _load(path: str | os.PathLike[str]) -> Report:
    report = Report.load(path)  # one-line UserError for a non-report or a newer schema
    if not report.tool_version:
        # Keep the version of mlfootprint that wrote the file, not ours.
        try:
            tool = json.loads(Path(path).read_text(encoding="utf-8")).get("tool")
        except (OSError, ValueError, AttributeError):
            tool = None
        if isinstance(tool, str) and tool.startswith("mlfootprint "):
            report.tool_version = tool[len("mlfootprint "):]
    return report
