"""Activation memory under a fused-kernel or compiled stack: the saved tensors a fused chain does not keep.

Eager PyTorch keeps for backward whatever each operator saves: an RMSNorm written as operators keeps an fp32 copy of
its input and its 16-bit normalized tensor, a SwiGLU keeps silu(gate) beside gate and up. A fused-kernel stack runs
such a chain as one kernel whose intermediates never reach device memory; its backward kernel recomputes them from the
chain's inputs, which it keeps instead (the sources are in ``data/fusion_memory.toml``). The rule, over the traced
allocations and the forward reads (``MemoryFacts.reads``):

- an *intermediate* is a storage created in the forward pass by an operator with no matrix arithmetic (elementwise,
  normalization, reduction, cast or copy), read in the forward pass, and read there only by such operators, each in
  the creating operator's module or in that module's parent (a chain inside one norm, one activation, one MLP: the
  residual stream, which the next block's modules read, is not one), not in the root module (the loss), and not a
  softmax's probabilities (which its backward reads: Megatron-LM's fused softmax keeps them too);
- an intermediate alive at the end of the forward pass (kept for backward) is freed after its last forward read
  instead, and the chain's inputs (what its creating operator read, followed back through other intermediates) are
  kept until it would have been freed;
- intermediates not kept for backward stay as traced: their forward transients are an upper bound.

The same rule serves ``fused`` and ``compiled`` (``none``: the trace as it is).

    dropped, kept = apply_fusion(allocs, records, reads, events, fwd_end)
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from ...core.datafiles import SourcedConstants
from ...hardware.catalog import get_device
from ...trace.records import FORWARD, SavedTensor
from ...workload import Workload
from ..predict.efficiency import is_measured
from ..predict.fusion import check_fusion, default_fusion
from ...core.units import plain_number

FUSION_MEMORY = SourcedConstants("analysis.memory", "fusion_memory.toml", "memory")


def stack_for(wl: Workload) -> tuple[str, str]:
    """The stack whose activations the memory model keeps, and why: --fusion when given, else the target's default
    (the step-time model's, so that a prediction's time and memory describe the same stack)."""
    if wl.fusion is not None:
        return str(check_fusion(wl.fusion)), "given with --fusion"
    device = get_device(wl.hardware) if wl.hardware else None
    return default_fusion(device, device is not None and is_measured(device))


def describe(mode: str, why: str, dropped: int, kept: int, traced_batch: int, loss: int = 0) -> str:
    """The assumption line of a training estimate."""
    if not fuses_activations(mode):
        return (f"the activations eager PyTorch keeps (--fusion {mode}, {why}); a fused-kernel or compiled stack "
                "keeps a fused chain's inputs, not its intermediates (--fusion fused)")
    return (f"the activations a {mode} stack keeps (--fusion {mode}, {why}): each chain of elementwise, "
            "normalization and cast operators keeps its inputs and recomputes its intermediates in backward "
            f"(Megatron-LM's fused SwiGLU and GeLU, Transformer Engine's norms, Inductor); in the traced step "
            f"(batch {traced_batch}) {plain_number(dropped / 1e6)} MB of intermediates eager PyTorch keeps are not kept and "
            f"{plain_number(kept / 1e6)} MB of chain inputs are kept in their place"
            + (f"; the loss is Megatron-LM's vocabulary-parallel cross entropy, whose backward writes into the kept "
               "fp32 probabilities and which does not hold the logits past the loss: "
               f"{plain_number(loss / 1e6)} MB fewer held" if loss else "")
            + " (rule and sources: mlfootprint/analysis/memory/data/fusion_memory.toml; --fusion none for eager "
            "PyTorch)")


def fuses_activations(mode: str) -> bool:
    """Whether the stack ``mode`` keeps a fused chain's inputs instead of its intermediates (data file)."""
    return mode in FUSION_MEMORY.value("rule", "stacks")


def fuses_loss(mode: str) -> bool:
    """Whether the stack ``mode`` runs the language-model loss as Megatron-LM's in-place cross entropy (data file)."""
    return mode in FUSION_MEMORY.value("loss", "stacks")


def apply_fused_loss(allocs: Sequence[Any], records: Sequence[Any], reads: Sequence[SavedTensor],
                     saved: Sequence[SavedTensor], events: Sequence[Any], fwd_end: int, output_embedding: str) -> int:
    """The loss as Megatron-LM's vocabulary-parallel cross entropy runs it (``[loss]`` in the data file), on the
    traced allocations (``timeline.Alloc``, changed in place): the T×V tensors the loss's backward allocates in the
    root module take no new memory (they are written into the kept fp32 log-probabilities, which live until the last
    of them is freed), and the logits the model returned, when nothing saved them for backward, are freed after their
    last forward read. Returns the bytes no longer held."""
    def record(op: int) -> Any:
        return records[op] if 0 <= op < len(records) else None

    in_place = frozenset(FUSION_MEMORY.value("loss", "in_place_backward"))
    kept_op = FUSION_MEMORY.value("loss", "kept_output")
    kept = [a for a in allocs if a.kind == "act" and a.phase == FORWARD and a.start < fwd_end <= a.end
            and record(a.op) is not None and record(a.op).module == "" and record(a.op).op == kept_op]
    written = [a for a in allocs if a.kind == "act" and a.phase != FORWARD and record(a.op) is not None
               and record(a.op).module == "" and record(a.op).op in in_place]
    freed = 0
    if len(kept) == 1 and written:  # one loss, and its backward found: otherwise the trace is left as it is
        buffer = kept[0]
        for a in written:
            if a.size <= buffer.size:  # (a gradient as large as the kept buffer at most: it is written into it)
                buffer.end = max(buffer.end, a.end)
                freed += a.size
                a.size = 0
    if not output_embedding:
        return freed
    packed = {s.storage for s in saved}
    index_of_event = [e.index for e in events]
    for a in allocs:
        rec = record(a.op)
        if a.kind != "act" or a.phase != FORWARD or rec is None or not rec.model_flops or a.key in packed \
                or not (a.start < fwd_end <= a.end) \
                or not (rec.module == output_embedding or rec.module.startswith(output_embedding + ".")):
            continue
        # its reads: of its storage, up to the next allocation that reuses the storage's address
        reused_at = min((b.op for b in allocs if b.key == a.key and b.op > a.op), default=len(records))
        last = max((r.op_index for r in reads if r.storage == a.key and a.op <= r.op_index < reused_at), default=a.op)
        read_at = bisect_right(index_of_event, last)
        a.end = max(a.start + 1, min(read_at, fwd_end - 1))  # the logits: freed once the loss has read them
        freed += a.size
    return freed


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def apply_fusion(allocs: Sequence[Any], records: Sequence[Any], reads: Sequence[SavedTensor],
                 events: Sequence[Any], fwd_end: int) -> tuple[int, int]:
    """Move the frees of ``allocs`` (timeline.Alloc, changed in place) as the rule above says. Returns the bytes of
    intermediates no longer kept for backward and of chain inputs kept in their place (each counted once)."""
    readers: dict[int, list[int]] = {}  # allocation → forward ops that read it
    inputs_of: dict[int, list[int]] = {}  # op → allocations it read
    # a read names the allocation of its storage made last at or before the reading op (addresses are reused): one
    # sweep over the allocations in order
    latest: dict[int, int] = {}
    nxt = 0
    for s in sorted(reads, key=lambda r: r.op_index):
        while nxt < len(allocs) and allocs[nxt].op <= s.op_index:
            latest[allocs[nxt].key] = nxt
            nxt += 1
        found = latest.get(s.storage)
        if found is not None:
            readers.setdefault(found, []).append(s.op_index)
            inputs_of.setdefault(s.op_index, []).append(found)

    def elementwise(op: int) -> bool:
        return 0 <= op < len(records) and not records[op].model_flops

    kept_outputs = frozenset(FUSION_MEMORY.value("rule", "kept_outputs"))
    intermediate: set[int] = set()
    for j, ops in readers.items():
        a = allocs[j]
        if a.kind != "act" or a.phase != FORWARD or not elementwise(a.op) or records[a.op].op in kept_outputs:
            continue
        home = records[a.op].module
        if not home:
            # the model's own loss (Hugging Face computes it in the root module) keeps its forward as traced:
            # Megatron-LM's vocab-parallel cross-entropy keeps its fp32 softmax (exp_logits) as eager PyTorch its
            # log-probabilities (its backward and the logits: apply_fused_loss)
            continue
        if all(elementwise(op) and records[op].module in (home, _parent(home)) for op in ops):
            intermediate.add(j)
    index_of_event = [e.index for e in events]
    dropped = kept = 0
    extended: set[int] = set()
    for j in sorted(intermediate):
        a = allocs[j]
        if not (a.start < fwd_end <= a.end):
            continue
        freed_at = a.end
        after_reads = bisect_right(index_of_event, max(readers[j]))
        a.end = max(a.start + 1, min(after_reads, fwd_end - 1))  # freed in the forward pass
        dropped += a.size
        stack, seen = list(inputs_of.get(a.op, ())), {j}
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            if i in intermediate:
                stack.extend(inputs_of.get(allocs[i].op, ()))
                continue
            b = allocs[i]
            if b.kind == "act" and b.end < freed_at:
                if b.end < fwd_end and i not in extended:
                    kept += b.size
                    extended.add(i)
                b.end = freed_at
    return dropped, kept
