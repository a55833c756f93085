"""A trace at another batch, derived from two traces of the same step at two batches, where that is exact.

What a traced step does per sample repeats for every sample: each operator's FLOPs and bytes, each allocation's
size, each saved tensor's size and batch dimension are ``a + b·batch`` (``b·batch`` for activations, ``a`` for
weights, gradients and optimizer state). :func:`derive_at_batch` takes traces at two batches, checks they are the
same step (the same operators in the same order in the same modules and phases, the same allocation and free
events of the same storages, the same parameters, module tree, blocks and assumptions), and writes the trace at a
third batch by extending every figure along the line through the two (an integer figure must land on an integer,
or nothing is derived). Derived: every op record's FLOPs and bytes, every memory event's size, the saved tensors'
sizes and shapes, the blocks' input bytes, the inputs' shapes and bytes, gradient and optimizer-state bytes, the
tokens and the batch. Copied: everything else (which must be equal in the two traces).

The line through two points is exact only for a step that is affine in the batch; a model with a batch × batch
tensor (a contrastive loss) is not, and two traces cannot tell. So a caller uses a derived trace to steer, and
decides with real traces: ``memory --max-batch`` takes the derived peaks to find the answer, then traces the
answer ``b`` and ``b + 1`` and falls back to tracing every probe when either disagrees with its derivation.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..core.errors import UserError
from .records import BlockSpan, MemoryEvent, MemoryFacts, OpRecord, SavedTensor, Trace

DERIVED_NOTE = "trace: derived from traces at two other batches"
_RECORD_FIGURES = ("model_flops", "other_flops", "attention_flops", "recompute_flops", "bytes_read", "bytes_written",
                   "alloc_bytes", "scan_flops")
_RECORD_SAME = ("index", "op", "module", "phase", "causal", "supported", "out_dtype", "upper_bound")


class _NotDerivable(Exception):
    pass


def derive_at_batch(first: Trace, second: Trace, batch: int) -> Trace | None:
    """The trace of the same step at ``batch`` (see the module's notes), or None where the two traces are not the
    same step at two batches, or a figure would not land on an integer."""
    b1, b2 = first.memory.batch, second.memory.batch
    if b1 == b2 or batch < 1:
        return None
    try:
        return _derive(first, second, b1, b2, batch)
    except _NotDerivable:
        return None


def _derive(t1: Trace, t2: Trace, b1: int, b2: int, b: int) -> Trace:
    def line(v1: int, v2: int) -> int:
        num = (v2 - v1) * (b - b1)
        if num % (b2 - b1):
            raise _NotDerivable
        v = v1 + num // (b2 - b1)
        if v < 0 <= min(v1, v2):
            raise _NotDerivable
        return v

    def same(v1: Any, v2: Any) -> Any:
        if v1 != v2:
            raise _NotDerivable
        return v1

    def shape(s1: tuple[int, ...], s2: tuple[int, ...]) -> tuple[int, ...]:
        if len(s1) != len(s2):
            raise _NotDerivable
        return tuple(line(x, y) for x, y in zip(s1, s2))

    if len(t1.records) != len(t2.records) or len(t1.events) != len(t2.events):
        raise _NotDerivable
    for name in ("module_tree", "params", "unsupported", "param_bytes", "buffer_bytes", "phases_run", "token_unit",
                 "causal", "moe", "assumptions", "kernels"):
        same(getattr(t1, name), getattr(t2, name))
    _same_identities(t1, t2)

    records = []
    for r1, r2 in zip(t1.records, t2.records):
        for name in _RECORD_SAME:
            same(getattr(r1, name), getattr(r2, name))
        records.append(dataclasses.replace(r1, **{n: line(getattr(r1, n), getattr(r2, n)) for n in _RECORD_FIGURES}))
    events = []
    for e1, e2 in zip(t1.events, t2.events):
        same((e1.index, e1.phase), (e2.index, e2.phase))
        events.append(MemoryEvent(e1.index, line(e1.delta, e2.delta), e1.phase, e1.storage))
    saved_bytes = {k1: line(v1, v2) for (k1, v1), v2 in zip(t1.saved_bytes.items(), t2.saved_bytes.values())}
    m1, m2 = t1.memory, t2.memory
    if any(len(getattr(m1, name)) != len(getattr(m2, name)) for name in ("saved", "reads", "blocks", "inputs")):
        raise _NotDerivable
    saved = [SavedTensor(s1.storage, same(s1.op_index, s2.op_index), line(s1.nbytes, s2.nbytes),
                         shape(s1.shape, s2.shape), same(s1.dtype, s2.dtype)) for s1, s2 in zip(m1.saved, m2.saved)]
    reads = [SavedTensor(s1.storage, same(s1.op_index, s2.op_index), line(s1.nbytes, s2.nbytes),
                         shape(s1.shape, s2.shape), same(s1.dtype, s2.dtype)) for s1, s2 in zip(m1.reads, m2.reads)]
    blocks = [BlockSpan(same(k1.path, k2.path), same(k1.start, k2.start), same(k1.end, k2.end),
                        line(k1.input_bytes, k2.input_bytes), list(k1.out_keys)) for k1, k2 in zip(m1.blocks, m2.blocks)]
    same([i for i, _ in m1.param_casts], [i for i, _ in m2.param_casts])
    memory = MemoryFacts(
        saved=saved, reads=reads, param_casts=list(m1.param_casts), blocks=blocks, grad_storages=list(m1.grad_storages),
        state_storages=list(m1.state_storages), output_embedding=same(m1.output_embedding, m2.output_embedding),
        inputs=[(shape(s1, s2), same(d1, d2)) for (s1, d1), (s2, d2) in zip(m1.inputs, m2.inputs)],
        batch=b)
    return dataclasses.replace(
        t1, records=records, events=events, saved_bytes=saved_bytes, memory=memory,
        input_bytes=line(t1.input_bytes, t2.input_bytes), grad_bytes=line(t1.grad_bytes, t2.grad_bytes),
        optimizer_state_bytes=line(t1.optimizer_state_bytes, t2.optimizer_state_bytes),
        tokens=line(t1.tokens, t2.tokens), trace_s=0.0, workload=_at_batch(t1.workload, b),
        assumptions=[*t1.assumptions, f"{DERIVED_NOTE} ({b1} and {b2}): every figure on the line through the two"])


def _at_batch(wl: Any, batch: int) -> Any:
    """The traced workload at the derived batch (a micro-batch that no longer divides it is dropped)."""
    try:
        return wl.with_changes(given=wl.given, batch=batch)
    except UserError:  # the workload's checks refuse the batch with its other fields: drop the micro-batch
        return wl.with_changes(given=wl.given - {"micro_batch", "grad_accum"}, batch=batch, micro_batch=None,
                               grad_accum=1)


def _same_identities(t1: Trace, t2: Trace) -> None:
    """The two traces name their storages alike. An allocator reuses addresses, so one identity may name several
    storages in turn: the events are paired by generation (a new one at each allocation), and each other list of
    identities (saved tensors, weight casts, block outputs, gradients, optimizer state) must repeat its identities
    in the same pattern."""
    gen1: dict[int, int] = {}
    gen2: dict[int, int] = {}
    by_generation: dict[tuple[int, int], tuple[int, int]] = {}
    back: dict[tuple[int, int], tuple[int, int]] = {}
    for e1, e2 in zip(t1.events, t2.events):
        if (e1.delta > 0) != (e2.delta > 0):
            raise _NotDerivable
        if e1.delta > 0:
            gen1[e1.storage] = gen1.get(e1.storage, 0) + 1
            gen2[e2.storage] = gen2.get(e2.storage, 0) + 1
        g1, g2 = (e1.storage, gen1.get(e1.storage, 0)), (e2.storage, gen2.get(e2.storage, 0))
        if by_generation.setdefault(g2, g1) != g1 or back.setdefault(g1, g2) != g2:
            raise _NotDerivable
    m1, m2 = t1.memory, t2.memory
    pairs = [(list(t1.saved_bytes), list(t2.saved_bytes)), ([s.storage for s in m1.saved], [s.storage for s in m2.saved]),
             ([s for _, s in m1.param_casts], [s for _, s in m2.param_casts]),
             ([k for b in m1.blocks for k in b.out_keys], [k for b in m2.blocks for k in b.out_keys]),
             (m1.grad_storages, m2.grad_storages), (m1.state_storages, m2.state_storages)]
    for ids1, ids2 in pairs:
        if _pattern(ids1) != _pattern(ids2):
            raise _NotDerivable
    # a read names the allocation live at its operator: the same event position in both (addresses are reused)
    if _read_instances(t1) != _read_instances(t2):
        raise _NotDerivable


def _read_instances(tr: Trace) -> list[int | None]:
    """For each forward read, the event position of the allocation it read (the last one of its storage at or
    before the reading operator): one sweep, the reads and the events both in operator order."""
    latest: dict[int, int] = {}
    pos = 0
    out: list[int | None] = []
    for s in tr.memory.reads:
        while pos < len(tr.events) and tr.events[pos].index <= s.op_index:
            if tr.events[pos].delta > 0:
                latest[tr.events[pos].storage] = pos
            pos += 1
        out.append(latest.get(s.storage))
    return out


def _pattern(ids: list[int]) -> list[int]:
    first: dict[int, int] = {}
    return [first.setdefault(i, len(first)) for i in ids]
