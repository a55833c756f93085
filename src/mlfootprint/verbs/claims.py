"""``claims``: published efficiency claims, recomputed by mlfootprint's own machinery, with a verdict each."""
from __future__ import annotations

from collections.abc import Sequence

from ..papers import as_rows, load_claims, run_claims
from ..papers.model import REPRODUCED
from ..report.schema import Report
from ..report.sections import ClaimRow, ClaimsSection


def claims(files: Sequence[str] = (), only: Sequence[str] = (), allow_code: bool = False) -> Report:
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

    Returns:
        A Report with a ``claims`` section: per claim the published figure, ours, the difference and a verdict
        (see :func:`mlfootprint.verbs.claims.regressions` for the claims that stopped reproducing).
        ``claims.rows`` maps each claim id to ``claim`` (its title), ``published``, ``ours``, ``unit``,
        ``difference`` ((ours − published) / published), ``tolerance``, ``verdict``
        (``"reproduced"``, ``"differs"`` or ``"not checkable"``), ``expected_verdict``, ``detail``,
        ``missing``, ``source`` and ``url``.

    Example:
        >>> rep = mf.claims(only=["palm-540b-mfu"])
        >>> rep.sections["claims"]["rows"]["palm-540b-mfu"]["verdict"]
        'reproduced'
    """
    rows = as_rows(run_claims(load_claims(list(files), allow_code=allow_code), list(only) or None))
    rep = Report(verb="claims")
    rep.add(ClaimsSection(rows={cid: ClaimRow(**row) for cid, row in rows.items()}))
    for cid in rows:
        rep.mark(f"claims.rows.{cid}.published", "published")
    return rep


def regressions(report: Report) -> list[str]:
    """Claims known to reproduce (their expected verdict) that no longer do."""
    rows = (report.get("claims") or {}).get("rows") or {}
    return [cid for cid, r in rows.items() if r.get("expected_verdict") == REPRODUCED and r.get("verdict") != REPRODUCED]
