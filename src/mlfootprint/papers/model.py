"""A claim: a published efficiency figure, the inputs to recompute it, and the verdict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What a verdict means (README, "Published claims"):
REPRODUCED = "reproduced"  # recomputed by mlfootprint's machinery from the inputs the source publishes, and it agrees
CONSISTENT = "consistent"  # a definition check: the source's own arithmetic on its own numbers agrees
DIFFERS = "differs"  # recomputed, and it disagrees by more than the tolerance (the gap is shown)
NOT_CHECKABLE = "not checkable"  # the checker ran and named the inputs the source does not publish
ERROR = "error"  # the checker crashed: a defect in mlfootprint, never reported as "not checkable"
VERDICTS = (REPRODUCED, CONSISTENT, DIFFERS, NOT_CHECKABLE)  # what a claim file may expect
MACHINERY = ("trace", "count", "memory", "predict", "footprint")  # the parts of mlfootprint a checker can use


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
    missing: list[str] = field(default_factory=list)  # inputs the source does not publish (defaults stand in)
    note: str = ""
    cause: str = ""  # why a "differs" row differs, only where that cause is shown (not guessed)
    pinned: float | None = None  # mlfootprint's own figure when the row was last reviewed: --check guards it
    pin_tolerance: float = 0.02  # relative move of our figure from `pinned` that --check reports
    origin: str = ""  # the file it came from
    allow_code: bool = False  # may its inputs name code to import (bundled, or --file with --allow-code)


@dataclass
class Outcome:
    ours: float | bool | None
    verdict: str
    detail: str  # how ours was obtained, and why it differs or cannot be checked
    missing: list[str] = field(default_factory=list)
    machinery: tuple[str, ...] = ()  # parts of mlfootprint that recomputed it (empty: the source's arithmetic)

    def diff(self, expected: Any) -> float | None:
        if isinstance(self.ours, bool) or isinstance(expected, bool) or self.ours is None or not expected:
            return None
        return (float(self.ours) - float(expected)) / float(expected)
