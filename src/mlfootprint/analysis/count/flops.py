"""FLOPs from the trace: by phase, by class, by module (a tree) and by operator."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ...trace.records import BACKWARD, FORWARD, OPTIMIZER, RECOMPUTE, ModuleNode, Trace


@dataclass
class FlopSummary:
    """FLOPs of one traced step, by phase and class (see DESIGN.md's conventions)."""

    forward: int  # model (matrix-class) FLOPs of the forward pass
    backward: int  # model FLOPs of the backward pass
    model: int  # forward + backward: the MFU numerator
    other: int  # elementwise/norm/softmax/reduction FLOPs of forward + backward
    other_forward: int
    other_backward: int
    optimizer: int  # all FLOPs of the optimizer step
    recompute: int  # model FLOPs re-done by activation recomputation and fused-attention kernels (HFU only)
    hardware: int  # model + recompute: the HFU numerator
    total: int  # every FLOP the step executes: model + recompute + other + optimizer
    attention: int  # attention score/value products inside `model`
    attention_causal_halved: int | None  # `model` with causal attention counted as half the square (None: none causal)
    per_token: float | None
    tokens: int
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    scan: int | None = None  # state-space scan products inside `model` (None: no scan); never attention, never halved


def flop_summary(trace: Trace) -> FlopSummary:
    """Sum the trace's op records by phase and class. Attention ops without an ``is_causal`` flag count as
    causal when the model is a causal language model (``trace.causal``)."""
    fwd = bwd = other_f = other_b = opt = recompute = attention = causal_attention = scan = 0
    for r in trace.records:
        if r.phase == FORWARD:
            fwd += r.model_flops
            other_f += r.other_flops
        elif r.phase == BACKWARD:
            bwd += r.model_flops
            other_b += r.other_flops
            recompute += r.recompute_flops
        elif r.phase == RECOMPUTE:
            recompute += r.model_flops
            other_b += r.other_flops
            continue
        elif r.phase == OPTIMIZER:
            opt += r.model_flops + r.other_flops
            continue
        scan += r.scan_flops
        if r.attention_flops:
            attention += r.attention_flops
            if r.causal or trace.causal:  # an op without is_causal in a causal LM: its mask is causal
                causal_attention += r.attention_flops
    model = fwd + bwd
    return FlopSummary(
        forward=fwd, backward=bwd, model=model, other=other_f + other_b, other_forward=other_f,
        other_backward=other_b, optimizer=opt, recompute=recompute, hardware=model + recompute,
        total=model + recompute + other_f + other_b + opt, attention=attention,
        attention_causal_halved=model - causal_attention // 2 if causal_attention else None,
        per_token=model / trace.tokens if trace.tokens else None, tokens=trace.tokens,
        unsupported_ops=dict(sorted(trace.unsupported.items())), scan=scan or None,
    )


def by_op(trace: Trace) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for r in trace.records:
        row = table.setdefault(r.op, {"calls": 0, "flops": 0, "model": 0, "other": 0, "bytes": 0, "class": "none"})
        row["calls"] += 1
        row["model"] += r.model_flops
        row["other"] += r.other_flops
        row["flops"] += r.model_flops + r.other_flops
        row["bytes"] += r.bytes_read + r.bytes_written
    for row in table.values():
        row["class"] = "model" if row["model"] else ("other" if row["other"] else "none")
    return table


def by_module(trace: Trace) -> dict[str, Any]:
    """The module tree with FLOPs rolled up: forward/backward model FLOPs, other, optimizer."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"forward": 0, "backward": 0, "other": 0, "recompute": 0})
    for r in trace.records:
        d = per[r.module]
        if r.phase == FORWARD:
            d["forward"] += r.model_flops
        elif r.phase == BACKWARD:
            d["backward"] += r.model_flops
            d["recompute"] += r.recompute_flops
        elif r.phase == RECOMPUTE:
            d["recompute"] += r.model_flops
        if r.phase != OPTIMIZER:
            d["other"] += r.other_flops

    known: set[str] = set()

    def walk(node: ModuleNode) -> dict[str, Any]:
        known.add(node.path)
        own = per.get(node.path, {})
        out: dict[str, Any] = {
            "name": node.name or node.type, "path": node.path, "type": node.type, "params": node.params,
            "forward": own.get("forward", 0), "backward": own.get("backward", 0),
            "other": own.get("other", 0), "recompute": own.get("recompute", 0), "children": [],
        }
        for child in node.children:
            c = walk(child)
            out["children"].append(c)
            for k in ("forward", "backward", "other", "recompute"):
                out[k] += c[k]
        return out

    root = walk(trace.module_tree)
    # Ops outside any known module path (functional code in the root, the loss) stay on the root.
    for path, d in per.items():
        if path not in known:
            for k in ("forward", "backward", "other", "recompute"):
                root[k] += d[k]
    return root
