"""Shared by the tests: trace a workload the way the prediction verbs do."""
from __future__ import annotations

from typing import Any

from mlfootprint.trace.run import trace
from mlfootprint.verbs.common import resolve_model
from mlfootprint.workload import Workload


def traced_for_prediction(model: Any, wl: Workload | None = None, inputs: Any = (), inputs_ref: str | None = None):
    """(spec, workload, trace) with checkpoint early stop off, as predict, plan and mfu trace."""
    wl = wl or Workload()
    spec = resolve_model(model, inputs, inputs_ref)
    return spec, wl, trace(spec, wl, checkpoint_early_stop=False)


class FakeClock:
    """A clock the test moves by hand (the tracker's ``clock=``)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
