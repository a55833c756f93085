"""Op records: what one traced step did, operator by operator.

Counting, memory and prediction all read these records (DESIGN.md: one trace
feeds everything).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ..workload import Workload

FORWARD = "forward"
BACKWARD = "backward"
OPTIMIZER = "optimizer"
RECOMPUTE = "recompute"  # a forward re-run inside backward (activation checkpointing)
PHASES = (FORWARD, BACKWARD, OPTIMIZER)


def fused_attention_op(op: str) -> bool:
    """Whether the operator (its name, with or without namespace and overload) is a fused attention kernel (SDPA,
    flash, memory-efficient), which keeps no T×T tensors."""
    return "scaled_dot_product" in op or "flash" in op or "efficient_attention" in op


@dataclass(slots=True)
class OpRecord:
    index: int
    op: str  # 'aten.mm.default'
    module: str  # fully qualified module path; '' for the root
    phase: str  # forward | backward | optimizer
    model_flops: int  # matrix-class FLOPs
    other_flops: int  # elementwise / norm / softmax / reduction FLOPs
    attention_flops: int  # part of model_flops that is attention score/value products
    causal: bool | None  # attention with the op's is_causal flag
    recompute_flops: int  # hardware-only FLOPs a fused kernel recomputes
    bytes_read: int
    bytes_written: int
    alloc_bytes: int  # bytes of storages this op created
    supported: bool  # False: arithmetic with no formula (listed in unsupported_ops)
    out_dtype: str = ""
    scan_flops: int = 0  # part of model_flops that is a state-space scan's products (never attention)
    upper_bound: bool = False  # its FLOPs are an upper bound (e.g. packed attention whose lengths were fake)
    # attention masked to a causal sliding window (the mask transformers builds for SDPA): the share of the T×T score
    # square inside the window, what a windowed FlashAttention kernel computes (0: no window)
    window_share: float = 0.0
    # a 16-bit matrix product cuBLAS runs with its unaligned kernels (a leading dimension not a multiple of 8)
    unaligned: bool = False
    # what a kernel-specific rate table needs of the call: ("batch_norm", layout, channels, per-channel
    # elements, input bytes, input dtype), ("conv", layout, C_in, C_out, kernel, H·W, dtype) or
    # ("attention", query length, key length, head dimension); () for the rest
    hint: tuple = ()


@dataclass(slots=True)
class MemoryEvent:
    index: int  # the op after which it happened (-1: before the first op)
    delta: int  # +bytes allocated, -bytes freed
    phase: str
    storage: int  # storage identity within this trace


@dataclass
class ModuleNode:
    name: str  # attribute name ('' for the root)
    path: str  # fully qualified ('' for the root)
    type: str
    params: int  # parameters owned directly or below (counted once)
    trainable: int
    children: list[ModuleNode] = field(default_factory=list)


@dataclass(frozen=True)
class ParamFact:
    """One parameter of the traced model (a shared, tied parameter appears once)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool
    embedding: bool = False  # the weight of an nn.Embedding (token or learned position embeddings)
    expert: bool = False  # a routed expert's weight (MoE)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class MoEFacts:
    experts: int  # routed experts per MoE layer
    top_k: int  # experts each token visits


class SavedTensor(NamedTuple):
    """A tensor autograd saved for backward: which storage, when (the op index at pack time), its size."""

    storage: int
    op_index: int
    nbytes: int
    shape: tuple[int, ...]
    dtype: str


@dataclass
class BlockSpan:
    """Where one repeated block (a child of an nn.ModuleList) ran in the forward op stream."""

    path: str
    start: int  # index of its first op record
    end: int  # one past its last
    input_bytes: int  # bytes of its first tensor input (what full recomputation keeps)
    out_keys: list[int] = field(default_factory=list)  # storages of its outputs


@dataclass
class MemoryFacts:
    """What the memory model needs beyond the op records."""

    saved: list[SavedTensor] = field(default_factory=list)
    # forward (and recomputed forward) reads of the storages the step created: which op (op_index) read which storage,
    # in SavedTensor's form; what the fused-stack activation rule (analysis/memory/fusion.py) needs to know a chain's
    # inputs from its intermediates
    reads: list[SavedTensor] = field(default_factory=list)
    param_casts: list[tuple[int, int]] = field(default_factory=list)  # (op index, storage) of weight dtype copies
    blocks: list[BlockSpan] = field(default_factory=list)
    grad_storages: list[int] = field(default_factory=list)
    state_storages: list[int] = field(default_factory=list)
    output_embedding: str = ""  # module path of the output embedding (LM head), if any
    inputs: list[tuple[tuple[int, ...], str]] = field(default_factory=list)  # shapes and dtypes of the inputs
    batch: int = 1  # samples in the traced inputs


@dataclass
class Trace:
    """Everything one traced step produced: the single source every analysis reads."""

    workload: Workload  # the workload as traced (its batch is the traced batch)
    records: list[OpRecord]
    events: list[MemoryEvent]
    saved_bytes: dict[int, int]  # storage → bytes, tensors saved for backward
    module_tree: ModuleNode
    params: list[ParamFact]
    unsupported: dict[str, int]
    param_bytes: int
    buffer_bytes: int
    input_bytes: int
    grad_bytes: int  # .grad storages alive after backward
    optimizer_state_bytes: int  # optimizer state alive after the step
    phases_run: list[str]
    tokens: int  # tokens (or samples) processed in the step
    token_unit: str = "tokens"
    causal: bool = False  # a causal language model (for the causal-halved attention figure)
    moe: MoEFacts | None = None
    memory: MemoryFacts = field(default_factory=MemoryFacts)
    assumptions: list[str] = field(default_factory=list)
    trace_s: float = 0.0
    kernels: str = "cpu"  # whose kernels the trace emulated: cpu or cuda (trace/target.py, emulated by trace/kernels.py)

    @property
    def batch(self) -> int:
        return self.memory.batch
