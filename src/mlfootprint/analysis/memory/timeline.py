"""The traced step's allocation timeline, classified so that it can be replayed for other layouts.

Every storage the traced step created (one alloc event, at most one free event;
see ``trace/records.py``) becomes one :class:`Alloc`. Each is put in one class:

=============  ==================================================================
``act_*``      activations and their gradients (forward, backward, recompute),
               split by whether tensor parallelism shards them (``shard``: inside
               attention/MLP between the column- and row-parallel linears, the
               vocabulary-parallel head and loss) or replicates them (``repl``:
               the residual stream, norms, embeddings), and by dtype (the traced
               compute dtype or another one, e.g. fp32 softmax statistics, int64
               indices, bool masks)
``sq``         saved attention-probability-like tensors (last two dims T×T):
               what selective recomputation (Korthikanti et al. 2022) drops
``head``       outputs of the output embedding (the logits) in the forward pass
``grad``       parameter gradients alive at the end of backward
``cast``       dtype copies of parameters (autocast's weight cache)
``opt``        optimizer-step temporaries
``state``      optimizer states (constant in steady state, kept out of the replay)
=============  ==================================================================

:class:`Profile` keeps, for the candidate peak points of the timeline (the end
of each run of allocations), the live bytes of every class. A layout's peak is
then ``max_t Σ_c coef_c · live_c(t)``: one matrix-vector product, no re-tracing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...core.datafiles import SourcedConstants
from ...trace.records import BACKWARD, FORWARD, OPTIMIZER, BlockSpan, MemoryFacts, SavedTensor, Trace
from .fusion import apply_fused_loss, apply_fusion, fuses_activations, fuses_loss

CLASSES = ("act_shard_cd", "act_shard_o", "act_repl_cd", "act_repl_o", "sq", "head", "grad", "cast", "opt")
C = {name: i for i, name in enumerate(CLASSES)}
ACT_CLASSES = (0, 1, 2, 3, 4, 5)
N = len(CLASSES)

PRE, POST = -1, -2  # groups outside the repeated blocks: before the first block, after the last

# Module names of column- and row-parallel linears and of the blocks tensor parallelism splits (data file).
TENSOR_PARALLEL = SourcedConstants("analysis.memory", "tensor_parallel.toml", "memory")


@dataclass(slots=True)
class Alloc:
    size: int
    start: int  # event position of the allocation
    end: int  # event position of the free; len(events) if alive at the end of the step
    op: int  # op index that allocated it
    phase: str
    key: int
    cls: int = 0
    group: int = PRE  # PRE, POST or the block number
    saved: bool = False  # alive at the end of the forward pass (kept for backward)
    kind: str = "act"  # act | grad | cast | opt | state


@dataclass
class Profile:
    """A classified trace, ready to be replayed for layouts."""

    allocs: list[Alloc]
    n_events: int
    n_blocks: int
    block_paths: list[str]
    block_inputs: list[int]  # bytes of each block's input (what full recomputation keeps)
    block_outputs: list[set[int]]  # storage keys of each block's output
    block_bwd_start: list[int | None]  # event position where each block's backward begins
    fwd_end: int  # event position where the forward pass ends
    state_bytes: int
    grad_bytes: int  # traced gradient bytes (alive at the end)
    cast_bytes: int
    seq: int | None
    compute_dtype: str
    training: bool
    fusion: str = "none"  # the stack whose kept activations the profile describes (fusion.py)
    fused_dropped: int = 0  # traced bytes of chain intermediates that stack does not keep for backward
    fused_kept: int = 0  # traced bytes of chain inputs it keeps in their place
    fused_loss: int = 0  # traced bytes the loss no longer holds as Megatron-LM's in-place cross entropy (fusion.py)
    notes: list[str] = field(default_factory=list)
    _cache: dict[Any, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ replays
    _KIND = {"act": 0, "grad": 1, "cast": 2, "opt": 3, "state": 4}

    def _arrays(self) -> dict[str, np.ndarray]:
        arr = self._cache.get("arrays")
        if arr is None:
            al = self.allocs
            phase_names = sorted({a.phase for a in al} | {FORWARD, "recompute"})
            outputs = [a.group >= 0 and a.key in self.block_outputs[a.group] for a in al]
            arr = {
                "size": np.array([float(a.size) for a in al], dtype=np.float64),
                "cls": np.array([a.cls for a in al], dtype=np.int64),
                "group": np.array([a.group for a in al], dtype=np.int64),
                "start": np.array([a.start for a in al], dtype=np.int64),
                "end": np.array([a.end for a in al], dtype=np.int64),
                "kind": np.array([self._KIND[a.kind] for a in al], dtype=np.int64),
                "saved": np.array([a.saved for a in al], dtype=bool),
                "output": np.array(outputs, dtype=bool),
                "phase": np.array([phase_names.index(a.phase) for a in al], dtype=np.int64),
            }
            self._cache["phase_names"] = phase_names
            self._cache["arrays"] = arr
        return arr

    def _group_mask(self, groups: frozenset[int] | None) -> np.ndarray:
        arr = self._arrays()
        if groups is None:
            return np.ones_like(arr["saved"])
        return np.isin(arr["group"], np.array(sorted(groups), dtype=np.int64))

    def matrix(self, groups: frozenset[int] | None = None, recompute_full: bool = False,
               offload: float = 0.0) -> tuple[np.ndarray, list[str]]:
        """Live bytes per class at each candidate peak point ([points × classes], float64) and each point's phase.

        ``groups`` keeps only the activations of those groups (a pipeline stage); ``recompute_full`` replays
        the step as full activation recomputation would run it: each block keeps only its input (the previous
        block's output) through the forward pass, and re-creates its saved tensors — and, for a moment, its
        forward transients — when its backward starts. ``offload`` (a fraction) of each block's activations that
        stay on the device from its forward to its backward (:meth:`offload_mask`) leaves the device when the block's
        forward ends and comes back when its backward starts (MEMO's per-layer swap). Candidate points are the ends of
        runs of allocations: for non-negative class weights the peak is always at one of them.
        """
        key = (groups, recompute_full, offload)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        arr = self._arrays()
        kind, size, cls = arr["kind"], arr["size"], arr["cls"]
        keep = kind != self._KIND["state"]
        if groups is not None:
            keep &= (kind != self._KIND["act"]) | self._group_mask(groups)
        n = self.n_events
        keys: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        clss: list[np.ndarray] = []
        phs: list[np.ndarray] = []
        start, end = arr["start"], arr["end"]
        split = np.zeros_like(keep)
        if recompute_full and self.n_blocks:
            block_end = np.array([-1 if x is None else x for x in self._block_fwd_ends()], dtype=np.int64)
            restart = np.array([-1 if x is None else x for x in self.block_bwd_start], dtype=np.int64)
            g = np.maximum(arr["group"], 0)
            be, rs = block_end[g], restart[g]
            split = (keep & (kind == self._KIND["act"]) & arr["saved"] & (arr["group"] >= 0) & ~arr["output"]
                     & (be >= 0) & (rs >= 0) & (start < be) & (be <= rs) & (rs < end))
            keys += [2.0 * be[split], 2.0 * rs[split] + 1]
            vals += [-size[split], size[split]]
            clss += [cls[split], cls[split]]
            phs += [arr["phase"][split], arr["phase"][split]]
        if offload > 0 and self.n_blocks:
            off, leave, back = self.offload_mask(groups, recompute_full)
            off = off & keep
            # the block's forward end (a free position) and the start of the backward that reads the tensor
            keys += [2.0 * leave[off], 2.0 * back[off] + 1]
            vals += [-offload * size[off], offload * size[off]]
            clss += [cls[off], cls[off]]
            phs += [arr["phase"][off], arr["phase"][off]]
        keys += [2.0 * start[keep] + 1]
        vals += [size[keep]]
        clss += [cls[keep]]
        phs += [arr["phase"][keep]]
        freed = keep & (end < n)
        keys += [2.0 * end[freed]]
        vals += [-size[freed]]
        clss += [cls[freed]]
        phs += [arr["phase"][freed]]
        k = np.concatenate(keys)
        v = np.concatenate(vals)
        c = np.concatenate(clss)
        ph = np.concatenate(phs)
        delta = np.zeros((k.size, N), dtype=np.float64)
        delta[np.arange(k.size), c] = v
        if recompute_full and self.n_blocks:
            spikes = []
            for b in range(self.n_blocks):
                spike = self._block_fwd_transient(b)
                r = self.block_bwd_start[b]
                if spike is not None and r is not None and (groups is None or b in groups):
                    spikes.append((r, spike))
            if spikes:
                sk = np.array([[2.0 * r + 1.5, 2.0 * r + 1.75] for r, _ in spikes], dtype=np.float64).reshape(-1)
                sv = np.array([[sp, [-x for x in sp]] for _, sp in spikes], dtype=np.float64).reshape(-1, N)
                rec_phase = self._cache["phase_names"].index("recompute")
                k = np.concatenate([k, sk])
                delta = np.concatenate([delta, sv])
                v = np.concatenate([v, sv.sum(axis=1)])
                ph = np.concatenate([ph, np.full((sk.size,), rec_phase, dtype=np.int64)])
        order = np.argsort(k, kind="stable")
        delta, v, ph = delta[order], v[order], ph[order]
        live = np.cumsum(delta, axis=0)
        grows = v > 0
        nxt = np.ones_like(grows)
        nxt[:-1] = ~grows[1:]
        rows = grows & nxt
        mat = live[rows]
        if mat.size == 0:
            mat = np.zeros((1, N), dtype=np.float64)
            phase_idx: list[int] = [self._cache["phase_names"].index(FORWARD)]
        else:
            phase_idx = ph[rows].tolist()
        names = self._cache["phase_names"]
        phases = _PhaseList(names, phase_idx)
        self._cache[key] = (mat, phases)
        return mat, phases

    def offload_mask(self, groups: frozenset[int] | None = None, recompute_full: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which activations activation offload moves to the host, when each leaves and when it comes back.

        The rule (MEMO, Zhao et al. 2025, arXiv:2407.12117: activations are offloaded to CPU memory after each
        layer's forward pass and fetched during the backward pass): an activation of repeated block b that stays on
        the device from b's forward to its backward — all of b's saved tensors, or under full recomputation only
        its output, the next block's input — leaves when b's forward ends. It comes back when the backward that
        reads it starts: b's own, or, for b's output, block b + 1's (whose recomputation or norm reads it). The
        last block's output feeds the head, whose backward runs first: it stays. Layers outside the blocks
        (embedding, head, loss) keep theirs on the device.
        """
        key = ("offload", groups, recompute_full)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        arr = self._arrays()
        n = self.n_blocks
        ends = np.array([-1 if x is None else x for x in self._block_fwd_ends()], dtype=np.int64)
        starts = [-1 if x is None else x for x in self.block_bwd_start]
        own = np.array(starts, dtype=np.int64)
        nxt = np.array(starts[1:] + [-1], dtype=np.int64)  # the next block's backward start
        g = np.maximum(arr["group"], 0)
        out = arr["output"]
        leave = ends[g]
        back = np.where(out, nxt[g], own[g])
        mask = ((arr["kind"] == self._KIND["act"]) & arr["saved"] & (arr["group"] >= 0) & self._group_mask(groups)
                & (leave >= 0) & (back >= 0) & (arr["start"] < leave) & (leave <= back) & (back < arr["end"]))
        if n == 0:
            mask &= False
        if recompute_full:
            mask &= out  # the rest is dropped at the block's end and recomputed (see matrix)
        hit = (mask, leave, back)
        self._cache[key] = hit
        return hit

    def offload_vector(self, groups: frozenset[int] | None = None, recompute_full: bool = False) -> list[float]:
        """Bytes per class that full activation offload (fraction 1) holds on the host for one micro-batch."""
        mask, _, _ = self.offload_mask(groups, recompute_full)
        return self._class_sums(mask)

    def _block_fwd_ends(self) -> list[int | None]:
        ends = self._cache.get("fwd_ends")
        if ends is None:
            last: list[int | None] = [None] * self.n_blocks
            for a in self.allocs:
                if a.kind == "act" and a.group >= 0 and a.phase == FORWARD:
                    if last[a.group] is None or a.start > last[a.group]:
                        last[a.group] = a.start
            ends = [x + 1 if x is not None else None for x in last]
            self._cache["fwd_ends"] = ends
        return ends

    def _block_fwd_transient(self, b: int) -> list[float] | None:
        """Per class, the largest non-saved live bytes of block b's forward (what its recomputation re-creates)."""
        cache = self._cache.get("fwd_transient")
        if cache is None:
            by_block: dict[int, list[Alloc]] = {}
            for a in self.allocs:
                if a.kind == "act" and a.group >= 0 and a.phase == FORWARD and not a.saved:
                    by_block.setdefault(a.group, []).append(a)
            cache = {}
            for blk, items in by_block.items():
                marks = sorted([(a.start, 1, a) for a in items] + [(a.end, 0, a) for a in items],
                               key=lambda m: (m[0], m[1]))
                live = [0.0] * N
                best = [0.0] * N
                total = best_total = 0.0
                for _, sign, a in marks:
                    if sign:
                        live[a.cls] += a.size
                        total += a.size
                        if total > best_total:
                            best, best_total = list(live), total
                    else:
                        live[a.cls] -= a.size
                        total -= a.size
                cache[blk] = best
            self._cache["fwd_transient"] = cache
        return cache.get(b)

    # ------------------------------------------------------------------ summaries
    def _class_sums(self, mask: np.ndarray) -> list[float]:
        arr = self._arrays()
        return np.bincount(arr["cls"][mask], weights=arr["size"][mask], minlength=N).tolist()

    def saved_vector(self, groups: frozenset[int] | None = None) -> list[float]:
        """Bytes per class alive at the end of the forward pass (what one in-flight micro-batch holds)."""
        key = ("saved", groups)
        if key not in self._cache:
            arr = self._arrays()
            mask = (arr["kind"] == self._KIND["act"]) & arr["saved"] & self._group_mask(groups)
            self._cache[key] = self._class_sums(mask)
        return list(self._cache[key])

    def recompute_kept_vector(self, groups: frozenset[int] | None = None) -> list[float]:
        """Bytes per class one in-flight micro-batch holds under full recomputation: block inputs (the previous
        block's output), plus whatever the layers outside the blocks (embedding, head, loss) save."""
        key = ("kept", groups)
        if key not in self._cache:
            arr = self._arrays()
            mask = ((arr["kind"] == self._KIND["act"]) & arr["saved"] & self._group_mask(groups)
                    & ((arr["group"] < 0) | arr["output"]))
            self._cache[key] = self._class_sums(mask)
        return list(self._cache[key])

    def sq_per_block(self) -> float:
        """The largest bytes of T×T tensors one block saves (selective recomputation re-creates one block's worth)."""
        if "sq_block" not in self._cache:
            per: dict[int, float] = {}
            for a in self.allocs:
                if a.kind == "act" and a.cls == C["sq"]:
                    per[a.group] = per.get(a.group, 0.0) + a.size
            self._cache["sq_block"] = max(per.values(), default=0.0)
        return self._cache["sq_block"]

    def group_of_block_range(self, lo: int, hi: int, first: bool, last: bool) -> frozenset[int]:
        g = set(range(lo, hi))
        if first:
            g.add(PRE)
        if last:
            g.add(POST)
        return frozenset(g)


class _PhaseList:
    """The phase of each candidate point, decoded on access (kept as indices: a replay has tens of thousands)."""

    def __init__(self, names: list[str], idx: list[int]) -> None:
        self._names = names
        self._idx = idx

    def __getitem__(self, i: int) -> str:
        return self._names[self._idx[i]]

    def __len__(self) -> int:
        return len(self._idx)


# ---------------------------------------------------------------------- building


def _seq_of(facts: MemoryFacts) -> int | None:
    """The sequence length of token inputs ([batch, seq] integers), None for other inputs."""
    if facts.inputs:
        shape, dtype = facts.inputs[0]
        if len(shape) == 2 and dtype in ("int64", "int32"):
            return int(shape[1])
    return None


def _is_square(shape: tuple[int, ...], seq: int, batch: int) -> bool:
    """Attention probabilities or scores: [batch, heads, T, T], or [batch·heads, T, T]."""
    if len(shape) < 3 or shape[-1] != seq or shape[-2] != seq:
        return False
    if len(shape) >= 4:
        return True
    return shape[0] % batch == 0 and shape[0] > batch


def _module_types(tr: Trace) -> dict[str, str]:
    types: dict[str, str] = {}

    def walk(node: Any) -> None:
        types[node.path] = node.type
        for c in node.children:
            walk(c)

    walk(tr.module_tree)
    return types


class _Classifier:
    """Module path → (group, tensor-parallel class) for a trace, cached per path."""

    def __init__(self, tr: Trace, blocks: list[BlockSpan], out_emb: str) -> None:
        self.row = frozenset(TENSOR_PARALLEL.value("names", "row_parallel"))
        self.column = frozenset(TENSOR_PARALLEL.value("names", "column_parallel"))
        self.sharded_parts = tuple(TENSOR_PARALLEL.value("names", "sharded_parts"))
        self.types = _module_types(tr)
        self.block_index = {b.path: i for i, b in enumerate(blocks)}
        self.out_emb = out_emb
        self._cache: dict[tuple[str, bool], tuple[int | None, bool]] = {}
        self.after_row = self._dropouts_after_row(tr)

    def _dropouts_after_row(self, tr: Trace) -> frozenset[str]:
        """Dropout modules whose input is a row-parallel linear's output (the first forward op before theirs
        is the linear's): that output is all-reduced, full on every device, and so is the dropout on it
        (Korthikanti et al. 2022, Sec. 4.2.1: the dropouts after attention and MLP are replicated)."""
        found: set[str] = set()
        seen: set[str] = set()
        prev = ""
        for r in tr.records:
            if r.phase != FORWARD:
                continue
            if r.module != prev:
                if r.module not in seen and "Dropout" in self.types.get(r.module, "") and self._is_row(prev):
                    found.add(r.module)
                seen.add(r.module)
                prev = r.module
        return frozenset(found)

    def _is_row(self, path: str) -> bool:
        parts = path.split(".")
        leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
        return leaf in self.row or (leaf == "dense" and parent == "output")

    def block_of(self, path: str) -> int | None:
        p = path
        while p:
            i = self.block_index.get(p)
            if i is not None:
                return i
            p = p.rpartition(".")[0]
        return None

    def classify(self, path: str, forward_like: bool) -> tuple[int | None, bool]:
        """(block or None, sharded by tensor parallelism?)."""
        key = (path, forward_like)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        block = self.block_of(path)
        shard = False
        if self.out_emb and (path == self.out_emb or path.startswith(self.out_emb + ".")):
            shard = True
        elif block is not None:
            shard = self._block_shard(path, forward_like)
        self._cache[key] = (block, shard)
        return block, shard

    def _nearest_linear(self, parts: list[str]) -> tuple[str, int]:
        """The tensor-parallel kind of the innermost parallel linear on a module path (``row``, ``column``, or ``""``
        for none) and the index of its name in ``parts``."""
        for i in range(len(parts) - 1, -1, -1):
            name = parts[i]
            parent = parts[i - 1] if i > 0 else ""
            if name in self.row or (name == "dense" and parent == "output"):
                return "row", i
            if name in self.column or (name == "dense" and parent == "intermediate"):
                return "column", i
        return "", -1

    def column_group(self, path: str) -> str | None:
        """See :func:`tp_readings`."""
        if self.block_of(path) is None:
            return None
        parts = path.split(".")
        kind, i = self._nearest_linear(parts)
        if kind != "column":
            return None
        return "attention" if any("attn" in p.lower() or "attention" in p.lower() for p in parts[:i]) else "mlp"

    def replicated_operators(self, path: str) -> bool:
        """See :func:`tp_replicated`."""
        if self.block_of(path) is None:
            return False
        return self._is_norm(path) or path in self.after_row or path in self.block_index

    def _is_norm(self, path: str) -> bool:
        leaf = path.rpartition(".")[2]
        return "Norm" in self.types.get(path, "") or "norm" in leaf.lower() or leaf.startswith("ln")

    def _block_shard(self, path: str, forward_like: bool) -> bool:
        if self._is_norm(path):
            return False
        if path in self.after_row:
            return False
        parts = path.split(".")
        kind, _ = self._nearest_linear(parts)
        if kind == "row":  # its output is all-reduced (full); the gradient of its input is sharded
            return not forward_like
        if kind == "column":  # its output is sharded; the gradient of its input is all-reduced (full)
            return forward_like
        return any(any(k in part.lower() for k in self.sharded_parts) for part in parts)


def tp_replicated(tr: Trace) -> Callable[[str], bool]:
    """Whether the operators of module ``path`` run on the whole tensor on every tensor-parallel rank when there is
    no sequence parallelism (Korthikanti et al. 2022, Sec. 4.2.2): inside a block, its norms, the dropouts after its
    row-parallel linears and its own operators (the residual adds) — the modules whose outputs the activation
    classifier keeps replicated; the linears' GEMMs are split either way, and outside the blocks the embedding and
    the head are vocabulary-parallel. For the step-time model: one reading of the modules for memory and time."""
    return tp_readings(tr)[0]


def tp_readings(tr: Trace) -> tuple[Callable[[str], bool], Callable[[str], tuple[str, int, bool] | None]]:
    """Two readings of a trace's modules under tensor parallelism, from one classifier: :func:`tp_replicated`'s, and
    for a module path inside a column-parallel linear of the blocks (None elsewhere): (its group, the elements of
    its module's weight, whether that weight is trained). The group is the linear Megatron-LM fuses, whose input
    gradient is all-reduced once per layer in the backward: ``attention`` (the query, key and value projections)
    or ``mlp`` (the first MLP linear, gate and up together). For the step-time model: the GEMMs a backward
    tensor-parallel collective runs under, a weight-gradient GEMM being the one that writes the weight's elements."""
    facts = getattr(tr, "memory", None)
    if facts is None or not facts.blocks:
        return (lambda path: False), (lambda path: None)
    clf = _Classifier(tr, _top_level_blocks(facts.blocks), facts.output_embedding)
    weights = {p.name.rpartition(".")[0]: (p.numel, p.trainable) for p in tr.params if p.name.endswith(".weight")}
    cache: dict[str, tuple[str, int, bool] | None] = {}

    def column(path: str) -> tuple[str, int, bool] | None:
        if path not in cache:
            group = clf.column_group(path)
            numel, trainable = weights.get(path, (0, False))
            cache[path] = (group, numel, trainable) if group else None
        return cache[path]

    return clf.replicated_operators, column


def _top_level_blocks(spans: list[BlockSpan]) -> list[BlockSpan]:
    """The outermost repeated stacks, each block once (its first forward)."""
    seen: set[str] = set()
    ordered = []
    for s in spans:
        if s.path in seen:
            continue
        seen.add(s.path)
        ordered.append(s)
    paths = [s.path for s in ordered]
    return [s for s in ordered if not any(s.path.startswith(p + ".") for p in paths if p != s.path)]


def build_profile(tr: Trace, training: bool, compute_dtype: str, fusion: str = "none") -> Profile:
    """Classify every allocation of the traced step (see the module docstring). Under a ``fusion`` stack that fuses
    elementwise chains (``fusion.py``), the saved intermediates of those chains give way to the chains' inputs."""
    facts = tr.memory
    events = tr.events
    n_events = len(events)
    spans = _top_level_blocks(facts.blocks)
    allocs, by_key = _allocations(events)
    zo = tr.workload.training and tr.workload.optimizer == "zo-sgd"
    fwd_end = _forward_end(events) if training and not zo else n_events
    _mark_kinds(allocs, facts, n_events)
    fused = (0, 0)
    if training and fuses_activations(fusion):
        fused = apply_fusion(allocs, tr.records, facts.reads, events, fwd_end)
    loss_freed = 0
    if training and fuses_loss(fusion):
        loss_freed = apply_fused_loss(allocs, tr.records, facts.reads, facts.saved, events, fwd_end,
                                      facts.output_embedding)
    saved = _saved_instances(allocs, by_key, facts.saved)
    clf = _Classifier(tr, spans, facts.output_embedding)
    first_block_op = spans[0].start if spans else None
    _classify_activations(allocs, tr, clf, saved, first_block_op, training, fwd_end, compute_dtype)
    bwd_start = _block_backward_starts(tr, clf, len(spans), fwd_end) if training and spans else [None] * len(spans)
    return Profile(allocs=allocs, n_events=n_events, n_blocks=len(spans), block_paths=[s.path for s in spans],
                   block_inputs=[s.input_bytes for s in spans], block_outputs=[set(s.out_keys) for s in spans],
                   block_bwd_start=bwd_start, fwd_end=fwd_end,
                   state_bytes=sum(a.size for a in allocs if a.kind == "state"),
                   grad_bytes=sum(a.size for a in allocs if a.kind == "grad"),
                   cast_bytes=sum(a.size for a in allocs if a.kind == "cast"),
                   seq=_seq_of(facts), compute_dtype=compute_dtype, training=training, fusion=fusion,
                   fused_dropped=fused[0], fused_kept=fused[1], fused_loss=loss_freed)


def _allocations(events: list[Any]) -> tuple[list[Alloc], dict[int, list[int]]]:
    """One Alloc per storage the step created (and freed, if it did); storage key → its Allocs."""
    allocs: list[Alloc] = []
    open_by_key: dict[int, int] = {}
    by_key: dict[int, list[int]] = {}
    n_events = len(events)
    for pos, e in enumerate(events):
        if e.delta > 0:
            open_by_key[e.storage] = len(allocs)
            by_key.setdefault(e.storage, []).append(len(allocs))
            allocs.append(Alloc(e.delta, pos, n_events, e.index, e.phase, e.storage))
        else:
            j = open_by_key.pop(e.storage, None)
            if j is not None:
                allocs[j].end = pos
    return allocs, by_key


def _forward_end(events: list[Any]) -> int:
    """Event position where the forward pass ends."""
    for pos, e in enumerate(events):
        if e.phase != FORWARD:
            return pos
    return len(events)


def _mark_kinds(allocs: list[Alloc], facts: MemoryFacts, n_events: int) -> None:
    """Optimizer states, gradients, weight casts and optimizer temporaries; the rest stay activations."""
    state_keys = set(facts.state_storages)
    grad_keys = set(facts.grad_storages)
    casts = set(facts.param_casts)
    for a in allocs:
        alive_at_end = a.end >= n_events
        if alive_at_end and a.key in state_keys and a.phase == OPTIMIZER:
            a.kind = "state"
        elif alive_at_end and a.key in grad_keys:
            a.kind, a.cls = "grad", C["grad"]
        elif (a.op, a.key) in casts:
            a.kind, a.cls = "cast", C["cast"]
        elif a.phase == OPTIMIZER:
            a.kind, a.cls = "opt", C["opt"]


def _saved_instances(allocs: list[Alloc], by_key: dict[int, list[int]],
                     saved: list[SavedTensor]) -> dict[int, tuple[tuple[int, ...], str]]:
    """Saved for backward: the instance of each packed storage that was live when it was packed."""
    out: dict[int, tuple[tuple[int, ...], str]] = {}
    for key, pack_op, _nbytes, shape, dtype in saved:
        best = None
        for j in by_key.get(key) or ():
            if allocs[j].op <= pack_op:
                best = j
        if best is not None:
            out[best] = (tuple(shape), dtype)
    return out


def _classify_activations(allocs: list[Alloc], tr: Trace, clf: _Classifier,
                          saved: dict[int, tuple[tuple[int, ...], str]], first_block_op: int | None,
                          training: bool, fwd_end: int, compute_dtype: str) -> None:
    """Group (block, before, after) and class (sharded or replicated, square, head) of each activation."""
    records = tr.records
    seq = _seq_of(tr.memory)
    batch = tr.memory.batch or 1
    out_emb = tr.memory.output_embedding
    pre_paths: set[str] = set()
    if first_block_op is not None:
        pre_paths = {r.module for r in records[:first_block_op] if r.phase == FORWARD}
    for j, a in enumerate(allocs):
        if a.kind != "act":
            continue
        rec = records[a.op] if 0 <= a.op < len(records) else None
        path = rec.module if rec is not None else ""
        block, shard = clf.classify(path, a.phase != BACKWARD)
        if block is not None:
            a.group = block
        elif a.phase != BACKWARD:
            a.group = PRE if first_block_op is None or a.op < first_block_op else POST
        else:
            a.group = PRE if path in pre_paths and path != "" else POST
        if block is None and path == "" and a.group == POST:
            shard = True  # the loss on the logits: vocabulary-parallel cross entropy under tensor parallelism
        a.saved = training and a.start < fwd_end <= a.end
        info = saved.get(j)
        dtype = rec.out_dtype if rec is not None else ""
        if info is not None and a.saved and seq and _is_square(info[0], seq, batch):
            a.cls = C["sq"]
        elif a.phase == FORWARD and out_emb and (path == out_emb or path.startswith(out_emb + ".")):
            a.cls = C["head"]
        elif shard:
            a.cls = C["act_shard_cd"] if dtype == compute_dtype else C["act_shard_o"]
        else:
            a.cls = C["act_repl_cd"] if dtype == compute_dtype else C["act_repl_o"]


def _block_backward_starts(tr: Trace, clf: _Classifier, n_blocks: int, fwd_end: int) -> list[int | None]:
    """Event position where each block's backward begins."""
    records = tr.records
    starts: list[int | None] = [None] * n_blocks
    for pos, e in enumerate(tr.events):
        if pos < fwd_end or e.phase == OPTIMIZER:
            continue
        rec = records[e.index] if 0 <= e.index < len(records) else None
        if rec is None or rec.phase == FORWARD:
            continue
        b = clf.block_of(rec.module)
        if b is not None and starts[b] is None:
            starts[b] = pos
    return starts
