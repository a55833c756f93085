"""Kernel fusion: the traced operators as the target stack would launch them.

Eager PyTorch runs every operator as its own kernel, each reading its inputs from and writing its output to
device memory. Fused-kernel stacks (Megatron-LM, Transformer Engine) and compilers (torch.compile's Inductor,
XLA) run chains of elementwise and normalization operators as one kernel. The rule and its sources are in
``data/fusion.toml``: a chain is a maximal run of consecutive operators of one phase whose class the stack
fuses; it reads the first operator's inputs and, of each later one, what it reads beyond its predecessor's
output; it writes the last operator's output.

    kernels, summary = fuse(trace.records, "fused")
    summary.ops_fused_away, summary.bytes_fused_away
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...core.datafiles import SourcedConstants
from ...core.errors import UserError, suggest
from ...core.precision import DTYPE_BYTES
from ...workload import FUSION as CHOICES
from ...core.units import plain_number

FUSION = SourcedConstants("analysis.predict", "fusion.toml", "fusion")
_DESCRIPTION = {
    "none": "eager: every traced operator is its own kernel and pays its own memory traffic and launch",
    "fused": "fused-kernel stack (Megatron-LM / Transformer Engine): each chain of elementwise and normalization "
             "operators between two matrix operators is one kernel; casts and copies stay separate; a "
             "softmax ends its kernel (its scale and mask fused in) and a softmax backward starts one",
    "compiled": "compiled (torch.compile / XLA): each chain of elementwise, normalization, cast and copy operators "
                "between two matrix operators is one kernel",
}


@dataclass(slots=True)
class FusedKernel:
    """A chain of traced operators run as one kernel (the fields a roofline reads, as on an op record)."""

    index: int
    op: str
    module: str
    phase: str
    other_flops: int
    bytes_read: int
    bytes_written: int
    out_dtype: str
    ops: int  # traced operators in the chain
    model_flops: int = 0
    attention_flops: int = 0
    recompute_flops: int = 0
    causal: bool | None = None


@dataclass
class FusionSummary:
    """What fusion did to one trace: operators and bytes of memory traffic before and after."""

    mode: str
    why: str  # where the mode came from (the option, or the target stack's default)
    ops: int = 0  # traced operators in the phases that fuse
    kernels: int = 0  # kernels they become
    bytes_before: int = 0  # memory traffic of those operators, unfused
    bytes_after: int = 0
    chains: int = 0  # chains of two or more operators

    @property
    def ops_fused_away(self) -> int:
        return self.ops - self.kernels

    @property
    def bytes_fused_away(self) -> int:
        return self.bytes_before - self.bytes_after

    def describe(self) -> str:
        line = f"kernel fusion: {self.mode} ({self.why}); {_DESCRIPTION[self.mode]}"
        if self.mode != "none":
            line += (f"; in the traced step {self.ops_fused_away:,} of {self.ops:,} operators and "
                     f"{plain_number(self.bytes_fused_away / 1e9, 3)} GB of {plain_number(self.bytes_before / 1e9, 3)} GB of their memory "
                     f"traffic were fused away ({self.chains:,} chains; rule and sources: "
                     "mlfootprint/analysis/predict/data/fusion.toml)")
        return line


def check_fusion(mode: str | None) -> str | None:
    """``mode`` if it is a known stack (or None, the default); a one-line UserError otherwise."""
    if mode is None or mode in CHOICES:
        return mode
    raise UserError(f"--fusion must be one of {', '.join(CHOICES)}, got {mode!r}.{suggest(str(mode), CHOICES)}")


def default_fusion(device: Any, measured: bool) -> tuple[str, str]:
    """The stack a device gets when --fusion is not given, and why."""
    key = "measured" if measured else str(getattr(device, "kind", "cpu"))
    if not FUSION.has("defaults", key):
        key = "cpu"
    mode = str(FUSION.value("defaults", key))
    what = "a calibrated profile" if key == "measured" else f"a {key}"
    return mode, f"the default for {what}; change it with --fusion {{{','.join(CHOICES)}}}"


def _op_class(r: Any) -> str:
    if r.model_flops:
        return "matrix"
    return "vector" if r.other_flops else "movement"


def first_step_only(r: Any) -> bool:
    """An operator of the optimizer phase that only a first step runs: the creation of a state tensor (torch.optim's
    zeros_like of Adam's moments, its step counters), which reads nothing and computes nothing."""
    return (r.phase == "optimizer" and not r.bytes_read and not r.model_flops and not r.other_flops
            and bool(getattr(r, "alloc_bytes", 0)))


@dataclass(frozen=True)
class OptimizerKernels:
    """What a stack runs for the optimizer step instead of the traced foreach kernels (``data/fusion.toml``
    [optimizer]): the fused step, and the copy of the fp32 masters into the 16-bit weights."""

    name: str  # the optimizer
    step_read: int | None  # the fused step's bytes (None: the stack runs the traced kernels)
    step_written: int | None
    copy_read: int  # the master copy (0: none)
    copy_written: int
    copy_dtype: str = ""

    def describe(self, mode: str, traced_bytes: int) -> str:
        parts = []
        if self.step_read is not None:
            parts.append(f"the {self.name} step as one fused multi-tensor kernel (the {mode} stack's fused optimizer) "
                         f"reading each parameter, gradient and state once and writing the parameter and state once: "
                         f"{plain_number((self.step_read + self.step_written) / 1e9)} GB against "
                         f"{plain_number(traced_bytes / 1e9)} GB for the traced foreach kernels")
        if self.copy_read:
            parts.append(f"the fp32 masters copied into the {self.copy_dtype} weights after the step "
                         f"({plain_number((self.copy_read + self.copy_written) / 1e9)} GB)")
        return ("optimizer step (steady state: the first step's creation of the optimizer state is not timed), in "
                "the traced step of the whole model (each device steps its own share, split as the layout shards "
                "the optimizer): " + "; ".join(parts)
                + "; rule and sources: mlfootprint/analysis/predict/data/fusion.toml [optimizer]")


def optimizer_kernels(trace: Any, mode: str) -> OptimizerKernels | None:
    """The optimizer step's kernels on the ``mode`` stack for a traced training step, or None where the traced
    kernels stand as they are (no optimizer phase, an optimizer without a fused kernel on an eager stack, and no
    master weights)."""
    wl = getattr(trace, "workload", None)
    if wl is None or "optimizer" not in getattr(trace, "phases_run", ()) or not wl.training:
        return None
    trainable = [p for p in trace.params if p.trainable]
    masters = wl.weights_16bit and wl.optimizer != "zo-sgd"
    if masters:  # fp32 masters and fp32 gradient buffers (trace/optim.py MasterWeights)
        master_bytes = sum(p.numel for p in trainable) * DTYPE_BYTES["float32"]
    else:
        master_bytes = sum(p.numel * DTYPE_BYTES.get(p.dtype, 4) for p in trainable)
    fused = mode in FUSION.value("optimizer", "stacks") and wl.optimizer in FUSION.value("optimizer", "fused")
    copy = masters and bool(FUSION.value("optimizer", "master_copy"))
    if not fused and not copy:
        return None
    state = int(trace.optimizer_state_bytes)
    copy_written = sum(p.numel * DTYPE_BYTES.get(p.dtype, 2) for p in trainable) if copy else 0
    return OptimizerKernels(
        name=wl.optimizer,
        # reads parameter, gradient and state; writes parameter and state
        step_read=2 * master_bytes + state if fused else None, step_written=master_bytes + state if fused else None,
        copy_read=master_bytes if copy else 0, copy_written=copy_written,
        copy_dtype=trainable[0].dtype if copy and trainable else "")


def fuse(records: Sequence[Any], mode: str, why: str = "",
         optimizer: OptimizerKernels | None = None) -> tuple[list[Any], FusionSummary]:
    """The kernels the target stack would launch for ``records``, and what fusion saved.

    The optimizer phase is a steady-state step (no creation of the optimizer state); ``optimizer`` (from
    :func:`optimizer_kernels`) replaces its traced arithmetic by one fused kernel and adds the master copy. With
    ``mode == "none"`` and no ``optimizer`` the other records are returned as they are."""
    summary = FusionSummary(mode, why)
    records = _optimizer_step([r for r in records if not first_step_only(r)], optimizer)
    if mode == "none":
        return records, summary
    fusible = set(FUSION.value("stacks", f"{mode}_classes"))
    phases = set(FUSION.value("stacks", "phases"))
    ends = _ops(f"{mode}_chain_ends")  # a kernel of the stack that writes its output: the chain stops after it
    starts = _ops(f"{mode}_chain_starts")  # one that starts from memory: a chain starts with it
    out: list[Any] = []
    chain: list[Any] = []

    def close() -> None:
        if not chain:
            return
        if len(chain) == 1:
            out.append(chain[0])
            summary.kernels += 1
            nbytes = chain[0].bytes_read + chain[0].bytes_written
            summary.bytes_before += nbytes
            summary.bytes_after += nbytes
        else:
            k = _merge(chain)
            out.append(k)
            summary.kernels += 1
            summary.chains += 1
            summary.bytes_before += sum(r.bytes_read + r.bytes_written for r in chain)
            summary.bytes_after += k.bytes_read + k.bytes_written
        summary.ops += len(chain)
        chain.clear()

    for r in records:
        if r.phase in phases and _op_class(r) in fusible:
            if chain and (chain[-1].phase != r.phase or r.op in starts):
                close()
            chain.append(r)
            if r.op in ends:
                close()
            continue
        close()
        out.append(r)
        if r.phase in phases:
            summary.ops += 1
            summary.kernels += 1
            nbytes = r.bytes_read + r.bytes_written
            summary.bytes_before += nbytes
            summary.bytes_after += nbytes
    close()
    return out, summary


def _optimizer_step(records: list[Any], optimizer: OptimizerKernels | None) -> list[Any]:
    """``records`` with the optimizer phase's arithmetic as the fused step kernel, and the master copy after it."""
    if optimizer is None:
        return records
    out: list[Any] = []
    step: FusedKernel | None = None
    last = None
    for r in records:
        if r.phase == "optimizer":
            last = r
            if optimizer.step_read is not None and _op_class(r) == "vector":
                if step is None:
                    step = FusedKernel(index=r.index, op=f"fused[{optimizer.name} step]", module=r.module,
                                       phase="optimizer", other_flops=0, bytes_read=int(optimizer.step_read),
                                       bytes_written=int(optimizer.step_written or 0), out_dtype="", ops=0)
                    out.append(step)
                step.other_flops += r.other_flops
                step.ops += 1
                continue
        out.append(r)
    if optimizer.copy_read and last is not None:
        out.append(FusedKernel(index=last.index, op="copy[fp32 masters -> weights]", module="", phase="optimizer",
                               other_flops=0, bytes_read=optimizer.copy_read, bytes_written=optimizer.copy_written,
                               out_dtype=optimizer.copy_dtype, ops=1))
    return out


def _ops(key: str) -> frozenset[str]:
    return frozenset(FUSION.value("stacks", key)) if FUSION.has("stacks", key) else frozenset()


def chain_bytes(chain: Iterable[Any]) -> tuple[int, int]:
    """(bytes read, bytes written) of a chain run as one kernel (the rule of ``data/fusion.toml``)."""
    read = written = 0
    prev = None
    for r in chain:
        if prev is None:
            read += r.bytes_read
        elif r.bytes_read >= prev.bytes_written:
            read += r.bytes_read - prev.bytes_written  # the predecessor's output is read on chip
        else:  # it reads less than its predecessor wrote: not that output, which is then written to memory
            read += r.bytes_read
            written += prev.bytes_written
        prev = r
    return read, written + prev.bytes_written if prev is not None else 0


def _merge(chain: list[Any]) -> FusedKernel:
    read, written = chain_bytes(chain)
    first, last = chain[0], chain[-1]
    name = "+".join(r.op.split(".")[1] if r.op.count(".") >= 2 else r.op for r in chain[:4])
    if len(chain) > 4:
        name += f"+…({len(chain)} ops)"
    return FusedKernel(index=first.index, op=f"fused[{name}]", module=first.module, phase=first.phase,
                       other_flops=sum(r.other_flops for r in chain), bytes_read=read, bytes_written=written,
                       out_dtype=last.out_dtype, ops=len(chain))
