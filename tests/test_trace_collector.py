"""A fake trace runs with Python's cyclic garbage collector paused (trace/run.py `_collector_paused`): a deep
model's trace makes hundreds of thousands of short-lived objects, and the full collections they set off walk every
object torch and transformers hold. The pause must cover the step, and leave the collector as it found it, also
when the trace fails."""
from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from mlfootprint.core.errors import UserError
from mlfootprint.trace.run import trace
from mlfootprint.verbs.common import resolve_model
from mlfootprint.workload import Workload


_SEEN: list[bool] = []  # module level: the tracer runs a copy of the model, never the user's own


class _Probe(nn.Module):
    """A linear layer that notes whether the collector is on each time it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _SEEN.append(gc.isenabled())
        return self.linear(x)


def test_the_collector_is_paused_during_a_fake_trace_and_back_on_after():
    _SEEN.clear()
    spec = resolve_model(_Probe(), [torch.randn(3, 8)])
    assert gc.isenabled()
    tr = trace(spec, Workload(batch=3, mode="train"))
    assert _SEEN == [False]
    assert gc.isenabled()
    assert tr.records  # the step ran and was recorded: 2·3·8·4 multiply-adds forward
    assert sum(r.model_flops for r in tr.records if r.phase == "forward") == 2 * 3 * 8 * 4


def test_a_trace_on_real_tensors_keeps_the_collector_on():
    _SEEN.clear()
    spec = resolve_model(_Probe(), [torch.randn(3, 8)])
    trace(spec, Workload(batch=3, mode="inference"), fake=False)
    assert _SEEN == [True]


def test_a_failing_trace_leaves_the_collector_as_it_found_it():
    spec = resolve_model(nn.Sequential(nn.ReLU()), [torch.randn(3, 8)])  # nothing to train
    with pytest.raises(UserError, match="trainable parameters"):
        trace(spec, Workload(batch=3, mode="train"))
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that paused it itself gets it back paused
        with pytest.raises(UserError):
            trace(spec, Workload(batch=3, mode="train"))
        assert not gc.isenabled()
    finally:
        gc.enable()
