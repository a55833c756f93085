"""Run the claims: recompute each, compare with the published figure, give a verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.datafiles import package_data_dir
from ..core.errors import UserError, suggest
from ..core.forked import balanced_shares, check_jobs, run_shares
from ..core.progress import LazyPhase
from .checkers import CHECKERS
from .model import CONSISTENT, DIFFERS, ERROR, NOT_CHECKABLE, REPRODUCED, Claim, Outcome


def _shipped(claim: Claim) -> bool:
    """Whether a claim comes from the package's own claims file (not a file of the user's)."""
    try:
        return Path(claim.origin).resolve().is_relative_to(package_data_dir("papers").resolve())
    except (OSError, ValueError):
        return False


def evaluate(claim: Claim) -> Outcome:
    """Run the claim's checker, then compare: the verdict depends on what recomputed the figure.

    A match is ``reproduced`` only when mlfootprint's machinery (trace, count, memory, predict, footprint)
    recomputed it; the source's own arithmetic on its own numbers is ``consistent``. A checker that cannot
    recompute names the missing inputs (``not checkable``); a checker that crashes is an ``error``.
    """
    try:
        out = CHECKERS[claim.kind](claim)
    except UserError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:
        if not _shipped(claim):  # the user's own claim: its inputs are the user's to fix
            raise UserError(f"{claim.origin}: claim {claim.id!r}: its inputs cannot be used ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]}); give each input the type and range of the same "
                            "input in papers/data/claims.toml") from None
        return Outcome(None, ERROR, f"the checker crashed: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a checker failing is a defect in mlfootprint: shown as such, never "not checkable"
        return Outcome(None, ERROR, f"the checker crashed: {type(exc).__name__}: {exc}")
    if out.verdict == NOT_CHECKABLE or out.ours is None:
        if not out.missing:
            return Outcome(None, ERROR, f"the checker gave no figure and named no missing input ({out.detail})")
        out.verdict = NOT_CHECKABLE
        return out
    if isinstance(claim.expected, bool) or isinstance(out.ours, bool):
        ok = bool(out.ours) == bool(claim.expected)
    elif claim.tolerance_abs is not None:
        ok = abs(float(out.ours) - float(claim.expected)) <= float(claim.tolerance_abs)
    else:
        ok = abs(float(out.ours) - float(claim.expected)) <= claim.tolerance * abs(float(claim.expected))
    if ok:
        out.verdict = REPRODUCED if out.machinery else CONSISTENT
    else:
        out.verdict = DIFFERS
        if claim.cause:
            out.detail += f"; cause: {claim.cause}"
    if claim.missing:
        out.missing = list(dict.fromkeys([*out.missing, *claim.missing]))
    return out


# Traces a claim's checker makes, roughly (what balances the processes): a family's bisection traces 3-4 models,
# a scaling claim two layouts' models, a claim naming a model one; the source's own arithmetic is instant.
_TRACES_BY_KIND = {"largest_fitting_family_model": 4.0, "scaling_efficiency": 2.0}


def _weight(claim: Claim) -> float:
    if claim.kind in _TRACES_BY_KIND:
        return _TRACES_BY_KIND[claim.kind]
    return 1.0 if "model" in claim.inputs else 0.05


def _group(claim: Claim) -> str:
    """Claims of one model go to one process: their traces are reused in memory."""
    model = claim.inputs.get("model")
    return f"model:{model}" if isinstance(model, str) and claim.kind not in _TRACES_BY_KIND else f"claim:{claim.id}"


def run_claims(claims: list[Claim], only: list[str] | None = None, jobs: int | None = None
               ) -> list[tuple[Claim, Outcome]]:
    """Evaluate ``claims`` (``only`` the named ones), in the file's order; ``jobs`` processes share the work
    (``core/forked.py``: forked where that is safe; None: one per CPU, at most four; 1: this process alone).
    Each claim's outcome is a function of the claim alone, so the split does not change any figure."""
    jobs = check_jobs(jobs)
    if only:
        known = {c.id for c in claims}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise UserError(f"unknown claim {unknown[0]!r}.{suggest(unknown[0], known)}")
        claims = [c for c in claims if c.id in only]
    shares = balanced_shares(claims, _weight, _group, jobs)
    outcomes: dict[int, Outcome] = {}
    bar = LazyPhase(f"checking {len(claims)} published claims", len(claims))  # begins after the fork

    def work(share: list[int]) -> list[Outcome]:
        out = []
        for i in share:
            out.append(evaluate(claims[i]))
            bar.advance()
        return out

    def done(k: int, results: list[Outcome]) -> None:
        outcomes.update(zip(shares[k], results))
        if k:  # another process's share, arrived
            bar.advance(len(results))

    with bar:
        run_shares(work, shares, done)
    return [(c, outcomes[i]) for i, c in enumerate(claims)]


def pin_drift(claim: Claim, outcome: Outcome) -> float | None:
    """Relative move of our figure from the one pinned in the claims file (None when nothing is pinned)."""
    if claim.pinned is None or not isinstance(outcome.ours, (int, float)) or isinstance(outcome.ours, bool):
        return None
    return (float(outcome.ours) - claim.pinned) / claim.pinned


def regressions(results: list[tuple[Claim, Outcome]]) -> list[Claim]:
    """Claims whose verdict is no longer the one the file expects, whose checker crashed, or whose figure moved
    more than ``pin_tolerance`` from the one pinned (a change to the model behind it, caught even on "differs" rows).
    """
    bad = []
    for c, o in results:
        drift = pin_drift(c, o)
        if o.verdict == ERROR or o.verdict != c.status or (drift is not None and abs(drift) > c.pin_tolerance):
            bad.append(c)
    return bad


def as_rows(results: list[tuple[Claim, Outcome]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for c, o in results:
        diff = o.diff(c.expected)
        rows[c.id] = {
            "claim": c.title, "kind": c.kind, "source": c.source, "url": c.url, "unit": c.unit,
            "published": c.expected, "ours": o.ours,
            "difference": None if diff is None else round(diff, 6),
            "tolerance": c.tolerance_abs if c.tolerance_abs is not None else c.tolerance,
            "verdict": o.verdict, "expected_verdict": c.status, "detail": o.detail,
            "missing": o.missing or c.missing, "machinery": list(o.machinery),
            "pinned": c.pinned, "pin_tolerance": c.pin_tolerance, "pin_drift": None if pin_drift(c, o) is None else round(pin_drift(c, o), 6),
        }
    return rows
