"""A claim: a published efficiency figure, the inputs to recompute it, and the verdict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REPRODUCED = "reproduced"
DIFFERS = "differs"
NOT_CHECKABLE = "not checkable"
VERDICTS = (REPRODUCED, DIFFERS, NOT_CHECKABLE)


@dataclass
class Claim:
    id: str
    title: str
    source: str  # citation
    url: str
    kind: str  # which checker (mlfootprint machinery) recomputes it
    expected: float | bool | None
    unit: str
    inputs: dict[str, Any]
    tolerance: float = 0.01  # relative
    tolerance_abs: float | None = None
    status: str = REPRODUCED  # the verdict this claim is known to reach (claims --check guards it)
    missing: list[str] = field(default_factory=list)  # published inputs that do not exist
    note: str = ""
    origin: str = ""  # the file it came from
    allow_code: bool = False  # may its inputs name code to import (bundled, or --file with --allow-code)


@dataclass
class Outcome:
    ours: float | bool | None
    verdict: str
    detail: str  # how ours was obtained, and why it differs or cannot be checked
    missing: list[str] = field(default_factory=list)

    def diff(self, expected: Any) -> float | None:
        if isinstance(self.ours, bool) or isinstance(expected, bool) or self.ours is None or not expected:
            return None
        return (float(self.ours) - float(expected)) / float(expected)
