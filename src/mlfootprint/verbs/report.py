"""``report``: a saved report, to render again in any format (or the report of a tracked job's rank files)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import UserError
from ..measure.distributed import ranks_dir
from ..report.schema import Report
from .track import merge_rank_files


def load_report(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                warmup_steps: int | None = None) -> Report:
    """A report written with ``--format json``; or, from the per-rank files of a tracked job (``rank<N>.jsonl``,
    their ``.ranks`` folder, or a report path whose ``.ranks`` folder exists), the report rank 0 would have
    written — also after a failure that kept it from writing one.

    Args:
        paths: one path or a list of paths. A single path that is not a folder, not a ``.jsonl`` file and not a
            missing report with a ``.ranks`` folder next to it is read as a saved report. Otherwise the paths name
            per-rank files (``rank<N>.jsonl``), folders of them (``run.json.ranks``) or report paths whose
            ``.ranks`` folder exists, and are merged into one ``track`` report.
        warmup_steps: for rank files only, the optimizer steps left out of the rates, a whole number >= 0
            (default None: the tracked run's own ``warmup_steps``). Given with a saved report, it raises
            :class:`~mlfootprint.core.errors.UserError`.

    Returns:
        The saved Report as it was written (its verb and sections: e.g. ``params``, ``flops``, ``memory``,
        ``time``, ``footprint``, ``measured``), or, from rank files, a ``track`` report with ``model``,
        ``workload`` and ``measured`` sections (per-rank figures in ``measured.by_rank``). A file that is not a
        report, or has a newer schema, raises :class:`~mlfootprint.core.errors.UserError`.

    Example:
        >>> rep = mf.load_report("llama.json")   # from: mlfootprint analyze llama-2-7b --format json -o llama.json
        >>> rep.sections["memory"]["peak_bytes"]
        >>> print(rep.to_markdown())
        >>> rep = mf.load_report("run.json.ranks", warmup_steps=5)   # a tracked job that died before writing
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise UserError("name a report file (written with --format json) or a tracked job's rank files")
    if warmup_steps is not None and (isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int)
                                     or warmup_steps < 0):
        raise UserError(f"--warmup-steps must be a whole number >= 0, got {warmup_steps!r}")
    if len(items) == 1 and _is_report_file(Path(items[0])):
        if warmup_steps is not None:
            raise UserError("--warmup-steps applies to a tracked job's rank files, not to a saved report")
        return Report.load(items[0])  # one-line UserError: not a report, newer schema, unreadable
    return merge_rank_files(items, warmup=warmup_steps)


def _is_report_file(p: Path) -> bool:
    return not p.is_dir() and p.suffix != ".jsonl" and not (not p.exists() and ranks_dir(p).is_dir())
