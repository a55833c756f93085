"""Loading claims: the bundled file plus the user's (`--file`, or *.toml in the user claims folders)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.datafiles import load_file, package_data_dir, user_data_dirs
from ..core.errors import UserError, suggest
from ..models.factory import looks_like_callable_ref
from ..core.validate import check_types
from .model import VERDICTS, Claim
from .checkers import CHECKERS

_REQUIRED = ("id", "title", "source", "kind", "expected", "unit", "inputs")


def claim_files(extra: list[str] | None = None) -> list[Path]:
    return [path for path, _trust in _claim_sources(extra)]


def _claim_sources(extra: list[str] | None) -> list[tuple[Path, str]]:
    """Every claims file with where it comes from: "bundled", "folder" (loaded by itself) or "command line"."""
    files = [(p, "bundled") for p in sorted(package_data_dir("papers").glob("*.toml"))]
    for d in user_data_dirs("claims"):
        if d.is_dir():
            files.extend((p, "folder") for p in sorted(d.glob("*.toml")))
    files.extend((Path(p), "command line") for p in (extra or []))
    return files


def code_references(value: Any) -> list[str]:
    """The strings in a claim's inputs that name Python code to import ('file.py:make', 'pkg.mod:make')."""
    if isinstance(value, str):
        return [value] if looks_like_callable_ref(value) else []
    if isinstance(value, dict):
        return [ref for v in value.values() for ref in code_references(v)]
    if isinstance(value, (list, tuple)):
        return [ref for v in value for ref in code_references(v)]
    return []


def _check_code(claim: Claim, trust: str, allow_code: bool) -> None:
    """A claims file runs code only when the user gives it on the command line and asks for it (--allow-code);
    the bundled claims are part of mlfootprint and trusted."""
    refs = code_references(claim.inputs)
    if trust == "bundled" or not refs:
        claim.allow_code = True if trust == "bundled" else allow_code
        return
    what = f"{claim.origin}: claim {claim.id!r} names Python code to import ({refs[0]!r})"
    if trust == "folder":
        raise UserError(f"{what}; claims files found in the user claims folder never run code: move the file out "
                        f"of the folder and pass it with --file {claim.origin} --allow-code")
    if not allow_code:
        raise UserError(f"{what}; claims files run no code unless you ask: check the file, then pass --allow-code")
    claim.allow_code = True


# The field types of a claims file (papers/data/claims.toml's layout), checked before any claim is read.
_INPUT_VALUE = {"anyOf": [{"type": ["number", "string", "boolean"]},
                          {"type": "array", "items": {"type": ["number", "string", "boolean", "object", "array"]}},
                          {"type": "object"}]}
_CLAIMS_FILE_TYPES = {"type": "object", "properties": {"claim": {"type": "array", "items": {
    "type": "object", "properties": {
        **{k: {"type": "string"} for k in ("id", "title", "source", "url", "kind", "unit", "status", "note")},
        "expected": {"type": ["number", "boolean"]}, "tolerance": {"type": "number"},
        "tolerance_abs": {"type": "number"}, "missing": {"type": "array", "items": {"type": "string"}},
        "cause": {"type": "string"}, "pinned": {"type": "number"}, "pin_tolerance": {"type": "number"},
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
        pinned = raw.get("pinned")
        if pinned is not None and (isinstance(pinned, bool) or not isinstance(pinned, (int, float)) or not pinned):
            raise UserError(f"{origin}: {label}: 'pinned' must be a non-zero number (our figure when reviewed)")
        pin_tol = raw.get("pin_tolerance", 0.02)
        if isinstance(pin_tol, bool) or not isinstance(pin_tol, (int, float)) or pin_tol < 0:
            raise UserError(f"{origin}: {label}: pin_tolerance must be a non-negative number")
        if raw.get("tolerance_abs") is not None and raw["tolerance_abs"] < 0:
            raise UserError(f"{origin}: {label}: tolerance_abs must be a non-negative number")
        out.append(Claim(
            id=str(raw["id"]), title=str(raw["title"]), source=str(raw["source"]), url=str(raw.get("url", "")),
            kind=raw["kind"], expected=expected, unit=str(raw["unit"]), inputs=dict(raw["inputs"]),
            tolerance=float(tol), tolerance_abs=raw.get("tolerance_abs"), status=status,
            missing=[str(m) for m in raw.get("missing", [])], note=str(raw.get("note", "")), origin=origin,
            cause=str(raw.get("cause", "")), pinned=None if pinned is None else float(pinned), pin_tolerance=float(pin_tol),
        ))
    return out


def load_claims(extra: list[str] | None = None, kinds: list[str] | None = None,
                allow_code: bool = False) -> list[Claim]:
    """The bundled claims, then the user folders', then ``extra`` (files from the command line). Only claims of
    ``extra`` files may name code to import (a model factory 'file.py:make'), and only with ``allow_code``."""
    kinds = kinds or sorted(CHECKERS)
    claims: dict[str, Claim] = {}
    for path, trust in _claim_sources(extra):
        if not path.is_file():
            raise UserError(f"claims file {path} " + ("is a folder; give a .toml file" if path.is_dir() else
                                                      "does not exist"))
        for claim in parse_claims(load_file(path), str(path), kinds):
            _check_code(claim, trust, allow_code)
            claims[claim.id] = claim  # a later file overrides a claim with the same id
    return list(claims.values())
