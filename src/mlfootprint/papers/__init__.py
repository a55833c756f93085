"""Published efficiency claims, recomputed with mlfootprint's own machinery."""
from .engine import as_rows, evaluate, pin_drift, regressions, run_claims
from .load import load_claims
from .model import CONSISTENT, DIFFERS, ERROR, NOT_CHECKABLE, REPRODUCED, Claim, Outcome

__all__ = ["Claim", "Outcome", "REPRODUCED", "CONSISTENT", "DIFFERS", "NOT_CHECKABLE", "ERROR", "load_claims",
           "run_claims", "evaluate", "regressions", "pin_drift", "as_rows"]
