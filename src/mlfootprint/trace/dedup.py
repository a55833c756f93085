"""Trace a deep model's repeated block a few times, not N times: the N-block trace synthesized exactly.

Strategy (issue 16, part 1). A model built from a config (catalog name, config.json, hub id) whose depth is one
config key (``num_hidden_layers``, ``n_layer``, ``num_layers``) is traced at four small depths ``L_k = n + k·p``,
k = 0..3, where p is the period of the per-layer pattern (1 for identical blocks, 2 for alternating layer types)
and n = p. Between consecutive depths each phase of the step (forward, backward with its recomputation, optimizer)
gains runs of operators — p more blocks' worth, one run per loop over them (the optimizer's state initialization
and its update are two loops over the parameters) — and an operator over every parameter at once (the foreach
optimizer's) grows in place: its FLOPs and bytes by a fixed amount, its memory events by a run. The depth-``L_2``
trace then holds two copies of each run, the *lower* and the *upper* one (by layer index), and shows how a copy's
storages relate to the rest of the step: a tensor a copy frees was allocated in the copy itself, in the copy just
below or above it (the residual stream, the gradient flowing down), or outside the copies (rotary tables, masks,
the head). The N-block trace is the depth-``L_2`` trace with its two copies replaced by (N − n)/p copies: the
lowest keeps the lower copy's relations, the highest the upper copy's, and those between take "the copy below"
from the upper and "the copy above" from the lower. Op records are renamed (``model.layers.17.mlp``) and
renumbered, and their memory events, saved tensors, weight casts, block spans, gradients and optimizer states
follow, with one storage key per allocation. Frees that land together after one operator (autocast's weight
cache cleared, in a hash map's order) are taken in the order of their allocations.

Why this strategy rather than replaying one block's records inside the full forward: the full forward would
still have to run (a block's outputs are what the next block reads, and autograd's graph is what backward
walks), so replay saves only the recording, not the fake-tensor dispatch that dominates the cost. Four shallow
traces cost a few blocks whatever N is.

Exactness is checked, not assumed: the same synthesis builds the depth-``L_3`` trace from the others and it must
equal the real depth-``L_3`` trace record for record and event for event (storages compared as allocation
instances); scalar totals and kernel counts must grow by the same amount per copy. Anything else is traced in
full: a model whose depth is not one key, an encoder–decoder or composite model, a per-layer setting without a
short period, copies whose memory events differ with their place in the stack (BERT's top layer in inference
frees a hidden state the others leave to the next layer), generation, user modules. A zeroth-order (MeZO) step,
whose parameter perturbations alternate with forward passes, is synthesized run by run of each phase. The
parameters, module tree and inputs come from the full model, built (not run) on fake tensors; only the step is
synthesized.
"""
from __future__ import annotations

import dataclasses
import difflib
import operator
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models.spec import ModelSpec
from ..workload import Workload
from .records import BACKWARD, FORWARD, RECOMPUTE, BlockSpan, MemoryEvent, MemoryFacts, OpRecord, \
    SavedTensor, Trace

# Config keys that set the depth of a decoder-only or encoder-only stack (one of them, exactly).
_DEPTH_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
# Keys that make the stack something other than one repeated block: a second stack, or layers chosen by index.
_NOT_ONE_STACK = ("num_decoder_layers", "decoder_layers", "encoder_layers", "is_encoder_decoder",
                  "first_k_dense_replace", "moe_layer_freq", "num_kv_shared_layers", "full_attn_idxs",
                  "attn_layer_indices", "attn_layer_offset", "expert_layer_offset", "cross_attention_layers",
                  "global_attn_every_n_layers", "layers_block_type", "hybrid_override_pattern")
_MIN_COPIES = 4  # below this many copies a full trace costs about as much as the four small ones
_MAX_PERIOD = 4


@dataclass(frozen=True)
class Plan:
    """How a model's depth is varied: the config key, the full depth N, the period p, the base depth n."""

    key: str
    depth: int
    period: int
    base: int

    def depths(self) -> list[int]:
        return [self.base + k * self.period for k in range(4)]


def plan_for(spec: ModelSpec, wl: Workload) -> Plan | None:
    """The depth plan for ``spec`` under ``wl``, or None where the trace must run in full."""
    if spec.source not in ("catalog", "hf-config", "hf-hub") or not spec.hf_config:
        return None
    if wl.mode not in ("train", "inference"):
        return None
    cfg = spec.hf_config
    if any(cfg.get(k) for k in _NOT_ONE_STACK):
        return None
    if cfg.get("use_sliding_window") or cfg.get("mlp_only_layers"):
        return None
    for sub in ("text_config", "vision_config", "audio_config", "encoder", "decoder"):
        if isinstance(cfg.get(sub), dict):
            return None  # a composite model: several stacks
    keys = [k for k in _DEPTH_KEYS if isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)]
    if len(keys) != 1:
        return None
    depth = int(cfg[keys[0]])
    period = _period(cfg, depth)
    if period is None:
        return None
    if (depth - period) % period or (depth - period) // period < _MIN_COPIES:
        return None
    return Plan(keys[0], depth, period, period)


def _period(cfg: dict[str, Any], depth: int) -> int | None:
    """The shortest period of the per-layer lists (length = depth) and step keys; None if none is short."""
    period = 1
    sparse = cfg.get("decoder_sparse_step")
    if isinstance(sparse, int) and sparse > 1:
        period = sparse
    for value in cfg.values():
        if isinstance(value, list) and len(value) == depth and depth > 1:
            p = next((q for q in range(1, _MAX_PERIOD + 1)
                      if all(value[i] == value[i % q] for i in range(depth))), None)
            if p is None:
                return None
            period = period * p // _gcd(period, p)
    return period if period <= _MAX_PERIOD else None


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def variant(spec: ModelSpec, plan: Plan, depth: int) -> ModelSpec:
    """``spec`` with ``depth`` blocks: the depth key set, per-layer lists cut to their first ``depth`` entries."""
    cfg = dict(spec.hf_config or {})
    for k, v in list(cfg.items()):
        if isinstance(v, list) and len(v) == plan.depth:
            cfg[k] = v[:depth]
    cfg[plan.key] = depth
    return dataclasses.replace(spec, hf_config=cfg)


# ------------------------------------------------------------------------------------------ the synthesis


_RECORD_NAMES = [f.name for f in dataclasses.fields(OpRecord)]
_RECORD_FIELDS = operator.attrgetter(*_RECORD_NAMES)
_INDEX_AT, _MODULE_AT = _RECORD_NAMES.index("index"), _RECORD_NAMES.index("module")


def _moved(r: OpRecord, index: int, module: str) -> OpRecord:
    """``r`` at another index and module: ``dataclasses.replace`` without its per-call field checks (a 126-layer
    synthesis makes tens of thousands of these)."""
    values = list(_RECORD_FIELDS(r))
    values[_INDEX_AT], values[_MODULE_AT] = index, module
    return OpRecord(*values)


class NotRepeating(Exception):
    """The small traces do not grow by one contiguous copy per phase: trace in full."""


def synthesize(plan: Plan, traces: list[Trace], full: Callable[[], dict[str, Any]]) -> Trace:
    """The depth-``plan.depth`` trace from the traces at ``plan.depths()`` (raises NotRepeating).

    ``full`` returns what comes from the full model itself (parameters, module tree, inputs, notes)."""
    t0, t1, t2, t3 = traces
    list_path = _block_list(t2, plan.depths()[2])
    if list_path is None or _block_list(t3, plan.depths()[3]) != list_path:
        raise NotRepeating("no single ModuleList of the blocks")
    layout = _Layout(plan, list_path, t0, t1, t2)
    # the check: the same synthesis, three copies, against the real depth-L3 trace
    check = layout.build(3, t1, t2)
    if _canonical(check) != _canonical(t3):
        raise NotRepeating("the synthesized trace differs from the traced one")
    copies = (plan.depth - plan.base) // plan.period
    out = layout.build(copies, t1, t2)
    for name in ("grad_bytes", "optimizer_state_bytes", "param_bytes", "buffer_bytes", "input_bytes"):
        setattr(out, name, _linear(name, copies, t1, t2, t3))
    facts = full()
    out.module_tree = facts["module_tree"]
    out.params = facts["params"]
    for name in ("param_bytes", "buffer_bytes", "input_bytes"):
        if facts[name] != getattr(out, name):
            raise NotRepeating(f"{name} of the full model is not the per-block extrapolation")
    out.memory.inputs = facts["inputs"]
    out.memory.batch = facts["batch"]
    out.memory.output_embedding = facts["output_embedding"]
    out.tokens, out.token_unit, out.causal, out.moe = facts["tokens"], facts["token_unit"], facts["causal"], facts["moe"]
    out.assumptions = facts["assumptions"]
    return out


def _linear(name: str, copies: int, t1: Trace, t2: Trace, t3: Trace) -> int:
    a, b, c = getattr(t1, name), getattr(t2, name), getattr(t3, name)
    if c - b != b - a:
        raise NotRepeating(f"{name} does not grow by the same amount per block")
    return b + (b - a) * (copies - 2)


def _block_list(tr: Trace, depth: int) -> str | None:
    """The path of the one ModuleList holding ``depth`` blocks."""
    found = []
    stack = [tr.module_tree]
    while stack:
        node = stack.pop()
        if node.type == "ModuleList" and [c.name for c in node.children] == [str(i) for i in range(depth)]:
            found.append(node.path)
        stack.extend(node.children)
    return found[0] if len(found) == 1 else None


def _stages(records: list[OpRecord]) -> list[tuple[int, int, int]]:
    """Record ranges (kind, start, end) of the step's runs of one kind: forward, backward (with recomputation) or
    optimizer. A backpropagation step is one run of each, in that order; a zeroth-order (MeZO) step alternates
    parameter perturbations (optimizer) with forward passes. Traces at other depths must have the same runs."""
    kinds = [0 if r.phase == FORWARD else 1 if r.phase in (BACKWARD, RECOMPUTE) else 2 for r in records]
    bounds: list[tuple[int, int, int]] = []
    start = 0
    while start < len(kinds):
        end = start
        while end < len(kinds) and kinds[end] == kinds[start]:
            end += 1
        bounds.append((kinds[start], start, end))
        start = end
    return bounds


def _events_by_record(tr: Trace) -> list[list[int]]:
    """Event positions after each record (index -1 goes to slot 0; record i to slot i+1)."""
    slots: list[list[int]] = [[] for _ in range(len(tr.records) + 1)]
    last = -1
    for pos, e in enumerate(tr.events):
        if e.index < last or e.index >= len(tr.records):
            raise NotRepeating("memory events out of order")
        last = e.index
        slots[e.index + 1].append(pos)
    return slots


def _instances(tr: Trace) -> list[int | None]:
    """For each event position, the position of the allocation it belongs to (itself for an allocation)."""
    out: list[int | None] = []
    open_: dict[int, int] = {}
    for pos, e in enumerate(tr.events):
        if e.delta > 0:
            open_[e.storage] = pos
            out.append(pos)
        elif e.delta == 0:  # an empty storage: the analyses see neither its allocation nor its free
            out.append(None)
        else:
            j = open_.pop(e.storage, None)
            if j is None:
                raise NotRepeating("a free without its allocation")
            out.append(j)
    return out


def _frees_by_allocation(slot: list[int], tr: Trace, inst: list[int | None]) -> list[int]:
    """``slot`` with each run of consecutive frees sorted by the position of the allocation it frees."""
    out: list[int] = []
    run: list[int] = []
    for pos in slot + [-1]:
        if pos >= 0 and tr.events[pos].delta < 0:
            run.append(pos)
            continue
        out.extend(sorted(run, key=lambda p: inst[p]))
        run = []
        if pos >= 0:
            out.append(pos)
    return out


def _instance_at(tr: Trace, key: int, record: int, allocs_by_key: dict[int, list[int]]) -> int | None:
    """The allocation (event position) of ``key`` live at record ``record``: the last one at or before it."""
    best = None
    for pos in allocs_by_key.get(key, ()):
        if tr.events[pos].index <= record:
            best = pos
    return best


def _rec_key(r: OpRecord) -> tuple[Any, ...]:
    return (r.op, r.module, r.phase, r.model_flops, r.other_flops, r.attention_flops, r.causal, r.recompute_flops,
            r.bytes_read, r.bytes_written, r.alloc_bytes, r.supported, r.out_dtype, r.scan_flops, r.upper_bound)


class _Indexed:
    """A trace with its events grouped by record and resolved to allocation instances."""

    def __init__(self, tr: Trace) -> None:
        self.tr = tr
        self.slots = _events_by_record(tr)
        self.inst = _instances(tr)
        # Storages freed together after one operator (a cache cleared, a list dropped) go in the order of a hash
        # map's keys, not of the blocks: each such run is taken in the order of the allocations it frees.
        self.slots = [_frees_by_allocation(slot, tr, self.inst) for slot in self.slots]
        self.stages = _stages(tr.records)
        self.allocs_by_key: dict[int, list[int]] = {}
        for pos, e in enumerate(tr.events):
            if e.delta > 0:
                self.allocs_by_key.setdefault(e.storage, []).append(pos)

    def site(self, pos: int) -> str:
        """The module whose operator allocated the storage event ``pos`` frees ('' for an allocation)."""
        alloc = self.inst[pos]
        if self.tr.events[pos].delta >= 0 or alloc is None or self.tr.events[alloc].index < 0:
            return ""
        return self.tr.records[self.tr.events[alloc].index].module

    def token(self, i: int) -> tuple[Any, ...]:
        """Record i with the shape of its events (not their storages): what alignment compares."""
        evs = tuple((self.tr.events[p].delta, self.tr.events[p].phase) for p in self.slots[i + 1])
        return _rec_key(self.tr.records[i]) + (evs,)


_NUMERIC = ("model_flops", "other_flops", "attention_flops", "recompute_flops", "bytes_read", "bytes_written",
            "alloc_bytes", "scan_flops")


def _skeleton(r: OpRecord) -> tuple[Any, ...]:
    """What must not change with depth: an operator over lists of tensors (foreach) may grow in its figures;
    any other only in the memory events that land after it (a list of such tensors freed)."""
    if "._foreach_" in r.op:
        return (r.op, r.module, r.phase, r.causal, r.supported, r.out_dtype, r.upper_bound)
    return _rec_key(r)


@dataclass
class _Aligned:
    """How a sequence ``b`` holds a shorter ``a``: runs inserted, and elements that changed in place."""

    inserts: list[tuple[int, int]]  # (start in b, length)
    back: dict[int, int]  # position in b → position in a, for elements present in both
    changed: set[int]  # positions in b whose element differs from its partner in a


def _align(ta: list[Any], tb: list[Any], sa: list[Any] | None = None, sb: list[Any] | None = None) -> _Aligned:
    """Align ``tb`` on ``ta``: only insertions; failing that, where skeletons ``sa``/``sb`` are given, insertions
    of skeletons and elements changed in place (an operator over all blocks' tensors: the foreach optimizer)."""
    try:
        return _align_on(ta, tb, None, None)
    except NotRepeating:
        if sa is None:
            raise
    return _align_on(sa, sb, ta, tb)


def _align_on(ka: list[Any], kb: list[Any], ta: list[Any] | None, tb: list[Any] | None) -> _Aligned:
    out = _Aligned([], {}, set())
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
        if tag == "insert":
            out.inserts.append((j1, j2 - j1))
        elif tag == "equal":
            out.back.update(zip(range(j1, j2), range(i1, i2)))
            if ta is not None:
                out.changed.update(j for i, j in zip(range(i1, i2), range(j1, j2)) if ta[i] != tb[j])
        else:
            raise NotRepeating("the step changes with depth beyond inserted copies")
    return out


def _copy_runs(first: _Aligned, second: _Aligned) -> list[tuple[int, int, int, bool]]:
    """The two copies of each inserted run in the deeper sequence: (lower start, upper start, size, upward).

    ``first`` aligns depth L1 on L0 (the lower copy inserted), ``second`` L2 on L1 (the upper one)."""
    if len(first.inserts) != len(second.inserts):
        raise NotRepeating("the phases do not grow alike")
    runs = []
    grown = 0  # what the runs before this one added between depths L1 and L2
    for (start1, size1), (start2, size2) in zip(first.inserts, second.inserts):
        if size1 != size2:
            raise NotRepeating("copies of different sizes")
        start1 += grown  # where the lower copy lies at depth L2, if it precedes the new one
        if start2 == start1 + size1:  # the new (upper) copy follows the lower one: forward order
            runs.append((start1, start2, size1, True))
        elif start2 == start1:  # the new copy comes first: backward order
            runs.append((start1 + size1, start2, size1, False))
        else:
            raise NotRepeating("the two copies are not adjacent")
        grown += size2
    return runs


class _Layout:
    """Where the lower and upper copies lie in the depth-L2 trace: runs of records, and runs of memory events
    inside operators that grow in place; how each copy's storages relate to the rest."""

    def __init__(self, plan: Plan, list_path: str, t0: Trace, t1: Trace, t2: Trace) -> None:
        self.plan = plan
        self.list_path = list_path
        self.block_re = re.compile(rf"^{re.escape(list_path)}\.(\d+)(?=\.|$)")
        i0, i1, i2 = _Indexed(t0), _Indexed(t1), _Indexed(t2)
        self.i2 = i2
        self.copies: list[tuple[int, int, int, bool]] = []  # record runs (absolute depth-L2 positions)
        self.scaled: dict[int, tuple[OpRecord, list[tuple[int, int, int, bool]]]] = {}  # record → (depth-L1 twin, event runs)
        if not [k for k, _, _ in i0.stages] == [k for k, _, _ in i1.stages] == [k for k, _, _ in i2.stages]:
            raise NotRepeating("the phases run in another order at another depth")
        for stage in range(len(i0.stages)):
            (_, s0, e0), (_, s1, e1), (_, s2, e2) = i0.stages[stage], i1.stages[stage], i2.stages[stage]
            tok = [[x.token(i) for i in range(s, e)] for x, (s, e) in ((i0, (s0, e0)), (i1, (s1, e1)), (i2, (s2, e2)))]
            sk = [[_skeleton(x.tr.records[i]) for i in range(s, e)]
                  for x, (s, e) in ((i0, (s0, e0)), (i1, (s1, e1)), (i2, (s2, e2)))]
            first, second = _align(tok[0], tok[1], sk[0], sk[1]), _align(tok[1], tok[2], sk[1], sk[2])
            self.copies.extend((s2 + lo, s2 + up, size, upward) for lo, up, size, upward in _copy_runs(first, second))
            for m in sorted(second.changed):
                j = second.back[m]
                if j not in first.changed:
                    raise NotRepeating("an operator grows from one depth on only")
                self.scaled[s2 + m] = self._scaled(i0, i1, i2, s0 + first.back[j], s1 + j, s2 + m)
        # every event of a copy: its position → (the lower copy's event it repeats, 0 lower | 1 upper)
        self.ev_where: dict[int, tuple[int, int]] = {}
        self.where: list[tuple[int, int] | None] = [None] * len(t2.records)  # record → (run, 0|1)
        for run, (lo, up, size, _) in enumerate(self.copies):
            for off in range(size):
                self.where[lo + off] = (run, 0)
                self.where[up + off] = (run, 1)
                rl, ru = t2.records[lo + off], t2.records[up + off]
                if self.rename(rl.module, plan.period) != ru.module or \
                        _rec_key(dataclasses.replace(rl, module=""))[1:] != _rec_key(dataclasses.replace(ru, module=""))[1:]:
                    raise NotRepeating("the two copies differ")
                sl, su = i2.slots[lo + off + 1], i2.slots[up + off + 1]
                if [(t2.events[p].delta, t2.events[p].phase) for p in sl] != \
                        [(t2.events[p].delta, t2.events[p].phase) for p in su]:
                    raise NotRepeating("the two copies' memory events differ")
                for pl, pu in zip(sl, su):
                    self.ev_where[pl] = (pl, 0)
                    self.ev_where[pu] = (pl, 1)
        for m, (_, runs) in self.scaled.items():
            slot = i2.slots[m + 1]
            for lo, up, size, _ in runs:
                for x in range(size):
                    self.ev_where[slot[lo + x]] = (slot[lo + x], 0)
                    self.ev_where[slot[up + x]] = (slot[lo + x], 1)

    @staticmethod
    def _scaled(i0: _Indexed, i1: _Indexed, i2: _Indexed, a: int, b: int, c: int
                ) -> tuple[OpRecord, list[tuple[int, int, int, bool]]]:
        """An operator over all blocks' tensors at once: figures linear in depth, its events gaining runs."""
        r0, r1, r2 = i0.tr.records[a], i1.tr.records[b], i2.tr.records[c]
        for name in _NUMERIC:
            if getattr(r2, name) - getattr(r1, name) != getattr(r1, name) - getattr(r0, name):
                raise NotRepeating("an operator does not grow linearly with depth")
        # a free names the module that allocated its storage: which block's cast a cleared cache frees
        ev = [[(x.tr.events[p].delta, x.tr.events[p].phase, x.site(p)) for p in x.slots[i + 1]]
              for x, i in ((i0, a), (i1, b), (i2, c))]
        return r1, _copy_runs(_align(ev[0], ev[1]), _align(ev[1], ev[2]))

    def rename(self, module: str, shift: int) -> str:
        if not shift:
            return module
        m = self.block_re.match(module)
        if m is None:
            return module
        return f"{self.list_path}.{int(m.group(1)) + shift}{module[m.end():]}"

    def _relation(self, inst: int | None, viewer: int) -> tuple[Any, ...]:
        """How an instance relates to copy ``viewer`` (0 lower, 1 upper): shared, or (distance, template)."""
        if inst is None:
            return ("none",)
        w = self.ev_where.get(inst)
        if w is None:
            return ("shared", inst)
        return ("rel", w[1] - viewer, w[0])

    def _resolve(self, rel_lower: tuple[Any, ...], rel_upper: tuple[Any, ...], c: int, n: int) -> Any:
        """The instance copy ``c`` of ``n`` (0 = lowest) refers to, given what the two template copies refer to."""
        if c == 0:
            rel = rel_lower
        elif c == n - 1:
            rel = rel_upper
        elif rel_lower == rel_upper:
            rel = rel_lower
        elif rel_lower[0] == "shared" and rel_upper[0] == "rel" and rel_upper[1] == -1:
            rel = rel_upper
        elif rel_upper[0] == "shared" and rel_lower[0] == "rel" and rel_lower[1] == 1:
            rel = rel_lower
        else:
            raise NotRepeating("a copy's storage relations do not repeat")
        if rel[0] == "none":
            return None
        if rel[0] == "shared":
            return ("s", rel[1])
        target = c + rel[1]
        if not 0 <= target < n:
            raise NotRepeating("a copy refers beyond the stack")
        return ("c", rel[2], target)

    def _shared_ref(self, inst: int | None, n: int) -> Any:
        """The instance a shared record refers to: a lower-copy one goes to copy 0, an upper-copy one to the top."""
        if inst is None:
            return None
        w = self.ev_where.get(inst)
        if w is None:
            return ("s", inst)
        return ("c", w[0], 0 if w[1] == 0 else n - 1)

    def build(self, n: int, t1: Trace, t2: Trace) -> Trace:
        """The trace with ``n`` copies (n ≥ 2).

        What a lower-copy record contributes does not depend on which copy it is emitted for: its renamed module
        splits once into the text around the block index, its events' relations to the other copies are taken
        once, and its facts compared with the upper copy's once (a 126-layer synthesis emits each record ~120
        times). Storage keys are numbered in order of first use, so the emitting order fixes them."""
        i2 = self.i2
        tr = i2.tr
        period = self.plan.period
        events_of, inst = tr.events, i2.inst
        order: list[tuple[int, int]] = []  # (depth-L2 record, copy; -1 shared) in the result's order
        upper: dict[int, int] = {}  # lower-copy record → its twin in the upper copy
        for lo, up, size, _ in self.copies:
            for off in range(size):
                upper[lo + off] = up + off
        run_at = {min(lo, up): (lo, size, upward) for lo, up, size, upward in self.copies}
        i = 0
        while i < len(tr.records):
            run = run_at.get(i)
            if run is None:
                order.append((i, -1))
                i += 1
                continue
            lo, size, upward = run
            for k in (range(n) if upward else range(n - 1, -1, -1)):
                order.extend((lo + off, k) for off in range(size))
            i += 2 * size
        keys: dict[Any, int] = {}

        def key_of(ref: Any, raw: int) -> int:
            if ref is None:
                return raw  # a storage the step did not create (an input): its own key
            got = keys.get(ref)
            if got is None:
                got = keys[ref] = len(keys) + 1
            return got

        def copy_ref(pl: int, pu: int, k: int) -> Any:
            """The instance an event of copy k refers to (pl, pu: the event in the lower and upper copy)."""
            e = events_of[pl]
            if e.delta > 0:
                return ("c", pl, k)
            return self._resolve(self._relation(inst[pl], 0), self._relation(inst[pu], 1), k, n)

        def shared_event(pos: int, index: int) -> MemoryEvent:
            e = events_of[pos]
            ref = ("s", pos) if e.delta > 0 else self._shared_ref(inst[pos], n)
            return MemoryEvent(index, e.delta, e.phase, key_of(ref, e.storage))

        # a copy's record: (record, text before and after its block index, the index; its events as (delta, phase,
        # storage, allocation position or None, relations to the lower and upper copy))
        copy_templates: dict[int, tuple[OpRecord, str, str, int, list[tuple[int, str, int, int | None, Any, Any]]]] = {}

        def copy_template(i: int) -> tuple[OpRecord, str, str, int, list[tuple[int, str, int, int | None, Any, Any]]]:
            r = tr.records[i]
            m = self.block_re.match(r.module)
            head, block, tail = (r.module, -1, "") if m is None else \
                (f"{self.list_path}.", int(m.group(1)), r.module[m.end():])
            evs = []
            for pl, pu in zip(i2.slots[i + 1], i2.slots[upper[i] + 1]):
                e = events_of[pl]
                if e.delta > 0:
                    evs.append((e.delta, e.phase, e.storage, pl, None, None))
                else:
                    evs.append((e.delta, e.phase, e.storage, None, self._relation(inst[pl], 0),
                                self._relation(inst[pu], 1)))
            out = copy_templates[i] = (r, head, tail, block, evs)
            return out

        records: list[OpRecord] = []
        events: list[MemoryEvent] = [shared_event(p, -1) for p in i2.slots[0]]
        resolve = self._resolve
        for new, (i, k) in enumerate(order):
            if k >= 0:
                r, head, tail, block, evs = copy_templates.get(i) or copy_template(i)
                module = head if block < 0 else f"{head}{block + period * k}{tail}"
                records.append(_moved(r, new, module))
                for delta, phase, storage, alloc, rel_lower, rel_upper in evs:
                    ref = ("c", alloc, k) if alloc is not None else resolve(rel_lower, rel_upper, k, n)
                    events.append(MemoryEvent(new, delta, phase, key_of(ref, storage)))
                continue
            r = tr.records[i]
            slot = i2.slots[i + 1]
            scaled = self.scaled.get(i)
            if scaled is None:
                records.append(_moved(r, new, r.module))
                events.extend(shared_event(p, new) for p in slot)
                continue
            r1, runs = scaled
            records.append(dataclasses.replace(r, index=new, **{
                name: getattr(r, name) + (getattr(r, name) - getattr(r1, name)) * (n - 2) for name in _NUMERIC}))
            starts = {min(lo, up): (lo, up, size, upward) for lo, up, size, upward in runs}
            o = 0
            while o < len(slot):
                run = starts.get(o)
                if run is None:
                    events.append(shared_event(slot[o], new))
                    o += 1
                    continue
                lo, up, size, upward = run
                for k2 in (range(n) if upward else range(n - 1, -1, -1)):
                    for x in range(size):
                        e = events_of[slot[lo + x]]
                        ref = copy_ref(slot[lo + x], slot[up + x], k2)
                        events.append(MemoryEvent(new, e.delta, e.phase, key_of(ref, e.storage)))
                o += 2 * size

        instance_cache: dict[tuple[int, int], int | None] = {}

        def instance_at(key: int, record: int) -> int | None:
            got = instance_cache.get((key, record), -1)
            if got == -1:
                got = instance_cache[key, record] = _instance_at(tr, key, record, i2.allocs_by_key)
            return got

        def named(key: int, record: int, k: int, key_upper: int | None = None) -> int:
            """A storage named by key at a depth-L2 record, as seen from copy k (-1 shared) → its new key."""
            inst_l = instance_at(key, record)
            if k < 0:
                return key_of(self._shared_ref(inst_l, n), key)
            inst_u = instance_at(key if key_upper is None else key_upper, upper[record])
            return key_of(resolve(self._relation(inst_l, 0), self._relation(inst_u, 1), k, n), key)

        mem = tr.memory
        # saved tensors and forward reads: (storage, op index) facts, renamed alike
        tensor_facts = {"saved tensors": mem.saved, "forward reads": mem.reads}
        facts_at: dict[str, dict[int, list[SavedTensor]]] = {what: {} for what in tensor_facts}
        for what, facts in tensor_facts.items():
            for s in facts:
                facts_at[what].setdefault(s.op_index, []).append(s)
        renamed: dict[str, list[SavedTensor]] = {
            what: [s._replace(storage=named(s.storage, -1, -1)) for s in at.get(-1, ())] for what, at in facts_at.items()}
        casts_at: dict[int, list[int]] = {}
        for op, key in mem.param_casts:
            casts_at.setdefault(op, []).append(key)
        param_casts: list[tuple[int, int]] = []
        spans_at: dict[int, list[BlockSpan]] = {}
        for sp in mem.blocks:
            if sp.end <= sp.start:
                raise NotRepeating("an empty block span")
            spans_at.setdefault(sp.end - 1, []).append(sp)
        blocks: list[BlockSpan] = []
        # the records with facts, or whose upper twin has some (the two copies must hold the same)
        with_facts = set(casts_at) | set(spans_at)
        for at in facts_at.values():
            with_facts |= set(at)
        with_facts |= {i for i, u in upper.items() if u in with_facts}
        compared: set[int] = set()
        for new, (i, k) in enumerate(order):
            if i not in with_facts:
                continue
            for what, at in facts_at.items():
                here = at.get(i, [])
                there = at.get(upper[i], []) if k >= 0 else here
                if k >= 0 and i not in compared and \
                        [(s.nbytes, s.shape, s.dtype) for s in here] != [(s.nbytes, s.shape, s.dtype) for s in there]:
                    raise NotRepeating(f"{what} differ between copies")
                renamed[what].extend(s._replace(storage=named(s.storage, i, k, u.storage), op_index=new)
                                     for s, u in zip(here, there))
            if k >= 0:
                compared.add(i)
            for key in casts_at.get(i, ()):
                inst = instance_at(key, i)
                if inst is None or tr.events[inst].index != i:
                    raise NotRepeating("a weight cast that is not allocated at its record")
                param_casts.append((new, key_of(("s", inst) if k < 0 else ("c", inst, k), key)))
            for sp in spans_at.get(i, ()):
                if k >= 0:
                    if self.where[sp.start] is None or self.where[sp.start][0] != self.where[i][0] or \
                            sp.start > i:
                        raise NotRepeating("a block span crosses a copy")
                    twin = next((t for t in spans_at.get(upper[i], [])
                                 if t.path == self.rename(sp.path, period)), None)
                    if twin is None or len(twin.out_keys) != len(sp.out_keys):
                        raise NotRepeating("block spans differ between copies")
                    out_keys = [named(key, i, k, key_u) for key, key_u in zip(sp.out_keys, twin.out_keys)]
                    path = self.rename(sp.path, period * k)
                else:
                    if any(self.where[x] is not None for x in range(sp.start, sp.end)):
                        raise NotRepeating("a shared block span holds a copy")
                    out_keys = [named(key, i, -1) for key in sp.out_keys]
                    path = sp.path
                blocks.append(BlockSpan(path, new - (i - sp.start), new + 1, sp.input_bytes, out_keys))
        last = len(tr.records) - 1

        def final_keys(keys_in: list[int]) -> list[int]:
            """Gradients and optimizer states alive at the end: each the instance of its key at the last record."""
            out: list[int] = []
            for key in keys_in:
                inst = instance_at(key, last)
                w = self.ev_where.get(inst) if inst is not None else None
                if inst is None:
                    out.append(key)
                elif w is None:
                    out.append(key_of(("s", inst), key))
                elif w[1] == 0:  # the upper copy's come with the copies
                    out.extend(key_of(("c", inst, k), key) for k in range(n))
            return out

        saved = renamed["saved tensors"]
        memory = MemoryFacts(saved=saved, reads=renamed["forward reads"], param_casts=param_casts, blocks=blocks,
                             grad_storages=final_keys(mem.grad_storages), state_storages=final_keys(mem.state_storages),
                             output_embedding=mem.output_embedding, inputs=list(mem.inputs), batch=mem.batch)
        unsupported = {op: t2.unsupported.get(op, 0) + (t2.unsupported.get(op, 0) - t1.unsupported.get(op, 0)) * (n - 2)
                       for op in set(t1.unsupported) | set(t2.unsupported)}
        return Trace(workload=tr.workload, records=records, events=events,
                     saved_bytes={s.storage: s.nbytes for s in saved}, module_tree=tr.module_tree, params=tr.params,
                     unsupported={op: c for op, c in unsupported.items() if c}, param_bytes=tr.param_bytes,
                     buffer_bytes=tr.buffer_bytes, input_bytes=tr.input_bytes, grad_bytes=tr.grad_bytes,
                     optimizer_state_bytes=tr.optimizer_state_bytes, phases_run=list(tr.phases_run), tokens=tr.tokens,
                     token_unit=tr.token_unit, causal=tr.causal, moe=tr.moe, memory=memory,
                     assumptions=list(tr.assumptions), kernels=tr.kernels)


def _canonical(tr: Trace) -> tuple[Any, ...]:
    """The trace with storages named by their allocation instance (first allocation first): what must match."""
    names: dict[int, int] = {}
    open_: dict[int, int] = {}
    events = []
    for pos, e in enumerate(tr.events):
        if e.delta > 0:
            open_[e.storage] = pos
            events.append((e.index, e.delta, e.phase, pos))
        elif e.delta == 0:
            events.append((e.index, 0, e.phase, None))
        else:
            events.append((e.index, e.delta, e.phase, open_.pop(e.storage, None)))
    # runs of frees after one operator, in the order of their allocations (as the synthesis emits them)
    ordered: list[tuple[Any, ...]] = []
    run: list[tuple[Any, ...]] = []
    for ev in events + [None]:
        if ev is not None and ev[1] < 0 and (not run or run[0][0] == ev[0]):
            run.append(ev)
            continue
        ordered.extend(sorted(run, key=lambda x: x[3]))
        run = []
        if ev is not None:
            if ev[1] < 0:
                run.append(ev)
            else:
                ordered.append(ev)
    events = ordered
    allocs_by_key: dict[int, list[int]] = {}
    for pos, e in enumerate(tr.events):
        if e.delta > 0:
            allocs_by_key.setdefault(e.storage, []).append(pos)

    def inst(key: int, record: int) -> Any:
        found = _instance_at(tr, key, record, allocs_by_key)
        return ("i", found) if found is not None else ("x",)

    last = len(tr.records) - 1
    mem = tr.memory
    del names
    return (
        [_rec_key(r) + (r.index,) for r in tr.records], events,
        [(inst(s.storage, s.op_index), s.op_index, s.nbytes, s.shape, s.dtype) for s in mem.saved],
        [(inst(s.storage, s.op_index), s.op_index, s.nbytes, s.shape, s.dtype) for s in mem.reads],
        [(op, inst(key, op)) for op, key in mem.param_casts],
        [(b.path, b.start, b.end, b.input_bytes, [inst(k, b.end - 1) for k in b.out_keys]) for b in mem.blocks],
        sorted(str(inst(k, last)) for k in mem.grad_storages), sorted(str(inst(k, last)) for k in mem.state_storages),
        sorted(Counter(tr.unsupported).items()), tr.phases_run, mem.inputs, mem.batch, mem.output_embedding,
        tr.kernels, tr.tokens,
    )
