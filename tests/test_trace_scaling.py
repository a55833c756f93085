"""A trace derived at another batch (trace/scaling.py) against a re-trace at that batch, and --max-batch using it.

tests/data/configs/tiny-llama (2 layers, hidden 64) on CPU kernels; traces at micro-batches 2 and 3 give the
derived trace at 7, compared with a real trace at 7: every op record (FLOPs and bytes) equal, every allocation
event's size equal, and the memory model's peak equal for two layouts.
"""
from __future__ import annotations


import pytest
import torch

import mlfootprint as mf
from mlfootprint.analysis.count.flops import flop_summary
from mlfootprint.analysis.memory import model as memory_module
from mlfootprint.analysis.memory.model import memory_model
from mlfootprint.models import resolve
from mlfootprint.trace.run import trace
from mlfootprint.trace.scaling import DERIVED_NOTE, derive_at_batch
from mlfootprint.workload import Layout, Workload

LLAMA = "tests/data/configs/tiny-llama"


@pytest.mark.parametrize("options", [dict(mode="train"), dict(mode="inference"), dict(mode="train", recompute="full"),
                                     dict(mode="generate", gen_tokens=16)],
                         ids=["train", "inference", "recompute", "generate"])
def test_a_derived_trace_is_the_re_trace(options):
    spec = resolve(LLAMA, [], None)

    def at(batch: int) -> Workload:
        return Workload(seq=32, batch=batch, **options)

    derived = derive_at_batch(trace(spec, at(2)), trace(spec, at(3)), 7)
    real = trace(spec, at(7))
    assert derived is not None
    assert derived.records == real.records  # counts: every op's FLOPs and bytes, exactly
    assert [(e.index, e.delta, e.phase) for e in derived.events] == [(e.index, e.delta, e.phase) for e in real.events]
    assert list(derived.saved_bytes.values()) == list(real.saved_bytes.values())
    assert [s[1:] for s in derived.memory.saved] == [s[1:] for s in real.memory.saved]
    for name in ("input_bytes", "grad_bytes", "optimizer_state_bytes", "tokens", "params", "module_tree"):
        assert getattr(derived, name) == getattr(real, name), name
    assert derived.memory.batch == real.memory.batch == 7 and derived.memory.inputs == real.memory.inputs
    assert flop_summary(derived) == flop_summary(real)
    for layout in (Layout.from_workload(at(7)), Layout.from_workload(at(7)).replace(micro_batch=9)):
        assert memory_model(spec, at(7), derived).per_device(layout).peak_bytes == \
            memory_model(spec, at(7), real).per_device(layout).peak_bytes  # memory: exactly
    assert derived.assumptions[-1].startswith(DERIVED_NOTE)


def test_traces_of_different_steps_derive_nothing():
    spec = resolve(LLAMA, [], None)
    two = trace(spec, Workload(mode="train", seq=32, batch=2))
    # at batch 1 the train step runs one more operator (the loss squeezes a dimension): not the same step
    one = trace(spec, Workload(mode="train", seq=32, batch=1))
    assert len(one.records) != len(two.records)
    assert derive_at_batch(one, two, 5) is None
    assert derive_at_batch(two, trace(spec, Workload(mode="train", seq=16, batch=3)), 5) is None  # another seq
    assert derive_at_batch(two, two, 5) is None  # one batch: no line


class Contrastive(torch.nn.Module):
    """A batch × batch similarity matrix: memory quadratic in the batch, so no line through two batches is right."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x)
        return (z @ z.t()).logsumexp(-1)


def test_max_batch_answers_with_real_traces_whatever_was_derived(monkeypatch):
    wl = mf.Workload(mode="train", batch=2)
    probes_seen: list[list[tuple[int, int, bool, bool]]] = []
    real_search = memory_module._max_batch

    def recording(*args, **kw):
        kw["probes"] = kw.get("probes") if kw.get("probes") is not None else []
        probes_seen.append(kw["probes"])
        return real_search(*args, **kw)

    monkeypatch.setattr("mlfootprint.verbs.memory._max_batch", recording)
    for model, size in ((LLAMA, "40MB"), (f"{__file__}:Contrastive", "400MB")):
        kw = dict(device_memory=size, max_batch=True, other_bytes=0, cache=False)
        inputs = [] if model == LLAMA else ["2x64"]
        workload = wl.with_changes(seq=32) if model == LLAMA else wl
        with_derived = mf.memory(model, workload, inputs=inputs, **kw).sections["memory"]
        with monkeypatch.context() as m:
            m.setattr(memory_module, "derive_at_batch", lambda *a: None)
            traced_only = mf.memory(model, workload, inputs=inputs, **kw).sections["memory"]
        assert with_derived["max_batch"] == traced_only["max_batch"] > 2
        probes = probes_seen[-2]
        assert any(derived for *_, derived in probes), "the search derived some probes"
        answer = with_derived["max_micro_batch"]
        real = {mb: peak for mb, peak, _, derived in probes if not derived}
        assert real[answer] <= 400e6 if model != LLAMA else real[answer] <= 40e6
        assert answer + 1 in real  # the answer and the next micro-batch: real traces
    # the quadratic model's derived peaks were wrong somewhere, and the answer is still the traced one
    contrastive = probes_seen[-2]
    derived_peaks = {mb: peak for mb, peak, _, d in contrastive if d}
    real_peaks = {mb: peak for mb, peak, _, d in contrastive if not d}
    assert any(derived_peaks[mb] != real_peaks[mb] for mb in derived_peaks.keys() & real_peaks.keys())
