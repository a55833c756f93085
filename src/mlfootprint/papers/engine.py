"""Run the claims: recompute each, compare with the published figure, give a verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.datafiles import package_data_dir
from ..core.errors import UserError, suggest
from ..core.progress import phase
from .checkers import CHECKERS
from .model import DIFFERS, NOT_CHECKABLE, REPRODUCED, Claim, Outcome


def _shipped(claim: Claim) -> bool:
    """Whether a claim comes from the package's own claims file (not a file of the user's)."""
    try:
        return Path(claim.origin).resolve().is_relative_to(package_data_dir("papers").resolve())
    except (OSError, ValueError):
        return False


def evaluate(claim: Claim) -> Outcome:
    if claim.status == NOT_CHECKABLE and claim.missing:
        return Outcome(None, NOT_CHECKABLE, "inputs the source does not publish: " + "; ".join(claim.missing), list(claim.missing))
    try:
        out = CHECKERS[claim.kind](claim)
    except UserError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:
        if not _shipped(claim):  # the user's own claim: its inputs are the user's to fix
            raise UserError(f"{claim.origin}: claim {claim.id!r}: its inputs cannot be used ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]}); give each input the type and range of the same "
                            "input in papers/data/claims.toml") from None
        return Outcome(None, NOT_CHECKABLE, f"mlfootprint could not recompute it: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a checker failing is a finding about mlfootprint, reported per row
        return Outcome(None, NOT_CHECKABLE, f"mlfootprint could not recompute it: {type(exc).__name__}: {exc}")
    if out.verdict == NOT_CHECKABLE or out.ours is None:
        out.verdict = NOT_CHECKABLE
        return out
    if isinstance(claim.expected, bool) or isinstance(out.ours, bool):
        ok = bool(out.ours) == bool(claim.expected)
    elif claim.tolerance_abs is not None:
        ok = abs(float(out.ours) - float(claim.expected)) <= float(claim.tolerance_abs)
    else:
        ok = abs(float(out.ours) - float(claim.expected)) <= claim.tolerance * abs(float(claim.expected))
    out.verdict = REPRODUCED if ok else DIFFERS
    if not ok and claim.missing:
        out.detail += "; the difference is within what unpublished inputs can explain: " + "; ".join(claim.missing)
    return out


def run_claims(claims: list[Claim], only: list[str] | None = None) -> list[tuple[Claim, Outcome]]:
    if only:
        known = {c.id for c in claims}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise UserError(f"unknown claim {unknown[0]!r}.{suggest(unknown[0], known)}")
        claims = [c for c in claims if c.id in only]
    results = []
    with phase(f"checking {len(claims)} published claims", total=len(claims)) as advance:
        for c in claims:
            results.append((c, evaluate(c)))
            advance()
    return results


def regressions(results: list[tuple[Claim, Outcome]]) -> list[Claim]:
    """Claims known to reproduce that no longer do."""
    return [c for c, o in results if c.status == REPRODUCED and o.verdict != REPRODUCED]


def as_rows(results: list[tuple[Claim, Outcome]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for c, o in results:
        diff = o.diff(c.expected)
        rows[c.id] = {
            "claim": c.title, "source": c.source, "url": c.url, "unit": c.unit,
            "published": c.expected, "ours": o.ours,
            "difference": None if diff is None else round(diff, 6),
            "tolerance": c.tolerance_abs if c.tolerance_abs is not None else c.tolerance,
            "verdict": o.verdict, "expected_verdict": c.status, "detail": o.detail,
            "missing": o.missing or c.missing,
        }
    return rows
