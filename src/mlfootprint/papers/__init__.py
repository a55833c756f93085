"""Published efficiency claims, recomputed with mlfootprint's own machinery."""
from .engine import as_rows, evaluate, regressions, run_claims
from .load import load_claims
from .model import DIFFERS, NOT_CHECKABLE, REPRODUCED, Claim, Outcome

__all__ = ["Claim", "Outcome", "REPRODUCED", "DIFFERS", "NOT_CHECKABLE", "load_claims", "run_claims", "evaluate",
           "regressions", "as_rows"]
