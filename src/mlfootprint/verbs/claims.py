"""``claims``: published efficiency claims, recomputed by mlfootprint's own machinery, with a verdict each."""
from __future__ import annotations

import statistics
from collections.abc import Sequence

from ..papers import as_rows, load_claims, run_claims
from .common import reuses_traces
from ..papers.model import ERROR
from ..report.schema import Report
from ..report.sections import ClaimRow, ClaimsSection


@reuses_traces
def claims(files: Sequence[str] = (), only: Sequence[str] = (), allow_code: bool = False, *,
           cache: bool = True, jobs: int | None = None) -> Report:
    """Recompute the bundled claims (and those of ``files``), or ``only`` the named ones.

    The claims are read from the bundled file, then the ``*.toml`` of the user's folders
    (``$MLFOOTPRINT_CLAIMS_PATH``, then ``$XDG_CONFIG_HOME/mlfootprint/claims/``), then ``files``; a later claim
    with the same id replaces an earlier one.

    Args:
        files: paths of extra claims files (TOML, a list of ``[[claim]]`` tables with ``id``, ``title``,
            ``source``, ``kind``, ``expected``, ``unit`` and ``inputs``); default: none.
        only: claim ids to check (e.g. ``"palm-540b-mfu"``); default: every claim. An unknown id raises
            :class:`~mlfootprint.core.errors.UserError` with the closest ids.
        allow_code: let the claims of ``files`` name Python code to import (a model ``"file.py:make"``);
            default False: such a claim is refused. Claims in the user folders never run code; the bundled ones
            are trusted.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.
        jobs: processes that share the claims (``--jobs``); default None: one per CPU this process may use, at
            most four; 1: this process alone. Workers are forked copies of this process, on Linux only (elsewhere
            the claims run here); the figures are the same whatever the split.

    Returns:
        A Report with a ``claims`` section: per claim the published figure, ours, the difference and a verdict
        (see :func:`mlfootprint.verbs.claims.regressions` for the claims that stopped reproducing).
        ``claims.rows`` maps each claim id to ``claim`` (its title), ``published``, ``ours``, ``unit``,
        ``difference`` ((ours − published) / published), ``tolerance``, ``verdict``
        (``"reproduced"``: recomputed by mlfootprint's machinery and it agrees; ``"consistent"``: the source's
        own arithmetic agrees; ``"differs"``; ``"not checkable"``: the checker named inputs the source does not
        publish; ``"error"``: the checker crashed), ``expected_verdict``, ``detail``, ``missing``,
        ``machinery`` (the parts of mlfootprint that recomputed it), ``pinned`` and ``pin_drift`` (our figure
        when the row was reviewed, and how far it moved), ``source`` and ``url``.

    Example:
        >>> rep = mf.claims(only=["palm-540b-mfu"])
        >>> rep.sections["claims"]["rows"]["palm-540b-mfu"]["verdict"]  # the paper's formula on its numbers
        'consistent'
    """
    rows = as_rows(run_claims(load_claims(list(files), allow_code=allow_code), list(only) or None, jobs=jobs))
    rep = Report(verb="claims")
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    errors = sorted(abs(r["difference"]) for r in rows.values()
                    if r["kind"] == "predict_step" and r["difference"] is not None)
    rep.add(ClaimsSection(rows={cid: ClaimRow(**row) for cid, row in rows.items()}, counts=counts,
                          predict_rows=len(errors),
                          predict_median_abs_difference=statistics.median(errors) if errors else None,
                          predict_worst_abs_difference=errors[-1] if errors else None))
    for cid in rows:
        rep.mark(f"claims.rows.{cid}.published", "published")
    return rep


def regressions(report: Report) -> list[str]:
    """Claims whose verdict is not the one their file expects, whose checker crashed, or whose figure moved
    more than its ``pin_tolerance`` from the figure pinned in the file."""
    rows = (report.get("claims") or {}).get("rows") or {}
    bad = []
    for cid, r in rows.items():
        drift, tol = r.get("pin_drift"), r.get("pin_tolerance")
        moved = drift is not None and tol is not None and abs(drift) > tol
        if r.get("verdict") == ERROR or r.get("verdict") != r.get("expected_verdict") or moved:
            bad.append(cid)
    return bad
