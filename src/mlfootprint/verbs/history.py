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
    """Add report files (written with ``--format json``) to the history: all of them, or none on bad input.

    Every file is read and checked before any is added; the database is created on first use, and a file
    that is not an mlfootprint history database is refused and left as it was.

    Args:
        files: paths of report files written with ``--format json`` (or ``Report.to_json()``).
        label: a label stored with every entry added (whitespace collapsed), to filter on in
            :func:`mlfootprint.history_list`; default None.
        db: the SQLite history file (default None: ``$MLFOOTPRINT_HISTORY``, else
            ``$XDG_DATA_HOME/mlfootprint/history.sqlite``, ``~/.local/share/...`` when that is unset).

    Returns:
        A Report (verb ``history add``) with a ``history`` section: ``db`` (the database path) and ``added``, one
        dict per file in order: ``file``, ``id`` (the new entry id), ``verb`` and ``model`` (the model's name, or
        None). An unreadable file or a non-report raises :class:`~mlfootprint.core.errors.UserError`.

    Example:
        >>> rep = mf.history_add(["llama-2-7b-a100.json", "llama-2-7b-h100.json"], label="baseline")
        >>> [row["id"] for row in rep.sections["history"]["added"]]   # in a new history
        [1, 2]
    """
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
    """Saved reports, newest first, with their headline figures (``history.entries``).

    All arguments are keyword-only; the filters given must all match.

    Args:
        model: the model name, case-insensitive; ``*`` is a wildcard (``"llama-2*"``). Default None: any.
        verb: the verb that made the report, exactly (``"analyze"``, ``"bench"``, ``"models show"``); default: any.
        label: the label given when the report was added, exactly; default: any.
        since: only entries added at or after this ISO date or time (``"2024-05-01"``,
            ``"2024-05-01T12:00:00Z"``; no time zone means UTC); default: any.
        limit: at most this many entries, a positive number (default None: all).
        db: the SQLite history file (default None: ``$MLFOOTPRINT_HISTORY``, else
            ``$XDG_DATA_HOME/mlfootprint/history.sqlite``, ``~/.local/share/...`` when that is unset).

    Returns:
        A Report (verb ``history list``) with a ``history`` section: ``db``, ``filters`` (the filters given, absent
        when none) and ``entries``, newest first, each with ``id``, ``created_at`` (UTC, ISO 8601), ``verb``,
        ``model``, ``label``, ``report_schema``, ``tool`` and the headline figures ``params_total``,
        ``flops_total``, ``peak_memory_bytes``, ``step_s``, ``mfu`` and ``co2e_g`` (None where the report has none).

    Example:
        >>> rep = mf.history_list(model="llama-2*", since="2024-05-01", limit=10)
        >>> [(e["id"], e["verb"], e["step_s"]) for e in rep.sections["history"]["entries"]]
    """
    hist = History(db)
    entries = hist.list(model=model, verb=verb, since=since, label=label, limit=limit)
    filters = {k: v for k, v in (("model", model), ("verb", verb), ("label", label), ("since", since)) if v is not None}
    rep = Report(verb="history list")
    rep.add(HistorySection(db=str(hist.path), entries=[e.to_dict() for e in entries], filters=filters or None))
    return rep


def history_show(entry_id: int, *, db: Db = None) -> Report:
    """One saved report, as it was saved.

    Args:
        entry_id: the entry id (``history.entries[i]["id"]`` of :func:`mlfootprint.history_list`, or the ``id``
            of ``history.added``). An unknown id raises :class:`~mlfootprint.core.errors.UserError`.
        db: the SQLite history file (default None: ``$MLFOOTPRINT_HISTORY``, else
            ``$XDG_DATA_HOME/mlfootprint/history.sqlite``, ``~/.local/share/...`` when that is unset).

    Returns:
        The stored Report itself, with its own verb and sections (e.g. ``params``, ``flops``, ``memory``,
        ``time``, ``footprint`` or ``measured``) and the version of mlfootprint that wrote it.

    Example:
        >>> rep = mf.history_show(3)
        >>> rep.sections["time"]["step_s"]
    """
    return History(db).get(entry_id)


def history_diff(a: int, b: int, *, all_figures: bool = False, db: Db = None) -> Report:
    """Two saved reports figure by figure: A, B and (B − A) / |A| (``all_figures``: unchanged ones too).

    Args:
        a: the entry id of the first report (A).
        b: the entry id of the second report (B).
        all_figures: also list the figures that did not change (default False: changed ones only).
        db: the SQLite history file (default None: ``$MLFOOTPRINT_HISTORY``, else
            ``$XDG_DATA_HOME/mlfootprint/history.sqlite``, ``~/.local/share/...`` when that is unset).

    Returns:
        A Report (verb ``history diff``) with a ``history`` section: ``db``, ``a`` and ``b`` (the two entries, as
        in :func:`mlfootprint.history_list`), ``all_figures``, and ``rows``, one per figure (numbers, booleans
        and text of every section) by dotted path: ``path`` (``"time.step_s"``), ``a``, ``b`` and
        ``rel_change`` = (b − a) / |a| (None for text, booleans, a missing side, or a = 0 ≠ b).
        An unknown id raises :class:`~mlfootprint.core.errors.UserError`.

    Example:
        >>> rep = mf.history_diff(1, 2)
        >>> [(r["path"], r["rel_change"]) for r in rep.sections["history"]["rows"] if r["path"] == "time.step_s"]
    """
    hist = History(db)
    ea, eb = hist.entry(a), hist.entry(b)
    # the per-module and per-operator tables only with all_figures (--all): between two models, thousands of rows
    rows = hist.diff(a, b, changed_only=not all_figures, include_text=True, trees=all_figures)
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
