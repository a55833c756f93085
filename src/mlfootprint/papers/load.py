"""Loading claims: the bundled file plus the user's (`--file`, or *.toml in the user claims folders)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.datafiles import load_file, package_data_dir, user_data_dirs
from ..core.errors import UserError, suggest
from ..core.validate import check_types
from .model import VERDICTS, Claim
from .checkers import CHECKERS

_REQUIRED = ("id", "title", "source", "kind", "expected", "unit", "inputs")


def claim_files(extra: list[str] | None = None) -> list[Path]:
    files = sorted(package_data_dir("papers").glob("*.toml"))
    for d in user_data_dirs("claims"):
        if d.is_dir():
            files.extend(sorted(d.glob("*.toml")))
    files.extend(Path(p) for p in (extra or []))
    return files


# The field types of a claims file (papers/data/claims.toml's layout), checked before any claim is read.
_INPUT_VALUE = {"anyOf": [{"type": ["number", "string", "boolean"]},
                          {"type": "array", "items": {"type": ["number", "string", "boolean", "object", "array"]}},
                          {"type": "object"}]}
_CLAIMS_FILE_TYPES = {"type": "object", "properties": {"claim": {"type": "array", "items": {
    "type": "object", "properties": {
        **{k: {"type": "string"} for k in ("id", "title", "source", "url", "kind", "unit", "status", "note")},
        "expected": {"type": ["number", "boolean"]}, "tolerance": {"type": "number"},
        "tolerance_abs": {"type": "number"}, "missing": {"type": "array", "items": {"type": "string"}},
        "inputs": {"type": "object", "additionalProperties": _INPUT_VALUE}}}}}}


def parse_claims(data: Any, origin: str, kinds: list[str]) -> list[Claim]:
    if not isinstance(data, dict) or not isinstance(data.get("claim"), list):
        raise UserError(f"claims file {origin} must hold a list of [[claim]] tables")
    out: list[Claim] = []
    check_types(data, _CLAIMS_FILE_TYPES, f"claims file {origin}",
                fix="see papers/data/claims.toml for the layout of a [[claim]]")
    for i, raw in enumerate(data["claim"]):
        label = f"claim #{i + 1}" + (f" ({raw.get('id')!r})" if isinstance(raw, dict) and raw.get("id") else "")
        if not isinstance(raw, dict):
            raise UserError(f"{origin}: {label} is not a table")
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise UserError(f"{origin}: {label} lacks {', '.join(missing)}")
        if raw["kind"] not in kinds:
            raise UserError(f"{origin}: {label} has unknown kind {raw['kind']!r}.{suggest(str(raw['kind']), kinds)}")
        if not isinstance(raw["inputs"], dict):
            raise UserError(f"{origin}: {label}: 'inputs' must be a table")
        expected = raw["expected"]
        if not isinstance(expected, (int, float, bool)):
            raise UserError(f"{origin}: {label}: 'expected' must be a number or true/false, got {expected!r}")
        status = raw.get("status", "reproduced")
        if status not in VERDICTS:
            raise UserError(f"{origin}: {label}: status must be one of {', '.join(VERDICTS)}, got {status!r}")
        tol = raw.get("tolerance", 0.01)
        if not isinstance(tol, (int, float)) or tol < 0:
            raise UserError(f"{origin}: {label}: tolerance must be a non-negative number")
        if raw.get("tolerance_abs") is not None and raw["tolerance_abs"] < 0:
            raise UserError(f"{origin}: {label}: tolerance_abs must be a non-negative number")
        out.append(Claim(
            id=str(raw["id"]), title=str(raw["title"]), source=str(raw["source"]), url=str(raw.get("url", "")),
            kind=raw["kind"], expected=expected, unit=str(raw["unit"]), inputs=dict(raw["inputs"]),
            tolerance=float(tol), tolerance_abs=raw.get("tolerance_abs"), status=status,
            missing=[str(m) for m in raw.get("missing", [])], note=str(raw.get("note", "")), origin=origin,
        ))
    return out


def load_claims(extra: list[str] | None = None, kinds: list[str] | None = None) -> list[Claim]:
    kinds = kinds or sorted(CHECKERS)
    claims: dict[str, Claim] = {}
    for path in claim_files(extra):
        if not path.is_file():
            raise UserError(f"claims file {path} does not exist")
        for claim in parse_claims(load_file(path), str(path), kinds):
            claims[claim.id] = claim  # a later file overrides a claim with the same id
    return list(claims.values())
