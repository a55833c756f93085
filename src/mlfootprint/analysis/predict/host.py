"""Host time of an eager step on a GPU: what the CPU spends dispatching the step's operators (``data/host_dispatch.toml``).

A GPU runs kernels asynchronously: the host queues each one and goes on to the next. A large model's kernels
take longer than their dispatch, so the queue stays full and the step is the GPU's time (plus a small gap per
kernel, the per-op overhead). A small model's kernels finish before the next arrives: the GPU waits on the host,
and the step is the host's time. Eager PyTorch dispatches each aten operator through Python, the dispatcher
and the caching allocator (about 10 µs for an elementwise operator, 20 for a cuBLAS product, 27 per operator of
the autograd engine's backward on the reference host), so a step of a few hundred small operators is host-bound
whatever GPU runs it.

The rule (applied in ``step.py``): a step takes max(host time, device time + per-op gaps). Host time is the sum,
per micro-batch, of each operator's host cost by family (forward, recomputed forward and backward, the module
calls a forward enters), plus the optimizer's per parameter. Only the eager stack is modelled: a compiled or
fused-kernel stack launches fewer, larger kernels (and CUDA graphs none from Python), so its host cost is
left to the per-op overhead.

    host_seconds(record, autocast=True)           # one operator's host cost
    module_calls(trace.records, "forward", trace.module_tree)  # the modules a forward enters
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ...core.datafiles import SourcedConstants
from ...trace.records import fused_attention_op

HOST = SourcedConstants("analysis.predict", "host_dispatch.toml", "host_dispatch")

_MATMUL = ("mm", "addmm", "bmm", "baddbmm", "_grouped_mm", "matmul", "addbmm")
_LOSS = ("_log_softmax", "nll_loss_forward", "nll_loss2d_forward", "log_softmax")
_CONTAINERS = ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict")


def forward_family(op: str, autocast: bool) -> str:
    """The host-cost family of a forward operator (``aten.mm.default`` → ``matmul``)."""
    name = op.split(".")[1] if op.startswith("aten.") else op.split(".")[0]
    if fused_attention_op(op):
        return "fused_attention"
    if name in _MATMUL:
        return "matmul"
    if "convolution" in name:
        return "convolution"
    if "batch_norm" in name:
        return "batch_norm"
    if "layer_norm" in name:
        return "layer_norm"
    if name in _LOSS:
        return "loss"
    if name == "_to_copy" and autocast:
        return "autocast_cast"
    return "elementwise"


def host_seconds(r: Any, autocast: bool) -> float:
    """One operator's host cost (forward, recompute and backward records; the optimizer is counted per parameter)."""
    if r.phase == "backward":
        return float(HOST.value("backward", "operator"))
    if r.phase in ("forward", "recompute"):
        return float(HOST.value("forward", forward_family(r.op, autocast)))
    return 0.0


def module_calls(records: Iterable[Any], phase: str, tree: Any, within: Callable[[str], bool] | None = None) -> int:
    """The modules a phase's forward enters: every module that holds one of its operators, with its ancestors
    (containers that are never called, such as ModuleList, left out); ``within`` keeps only the paths it accepts."""
    kinds = _module_types(tree)
    paths: set[str] = set()
    for r in records:
        if r.phase != phase:
            continue
        path = r.module or ""
        while path not in paths:
            paths.add(path)
            if not path:
                break
            path = path.rpartition(".")[0]
    return sum(1 for p in paths if kinds.get(p, "") not in _CONTAINERS and (within is None or within(p)))


def optimizer_seconds(trainable_tensors: int) -> float:
    return trainable_tensors * float(HOST.value("optimizer", "per_parameter"))


def module_call_seconds() -> float:
    return float(HOST.value("forward", "module_call"))


def reference_host() -> str:
    return str(HOST.value("reference_host", "cpu"))


def host_scale(calibrated_per_op_s: float | None) -> float:
    """How much slower this host dispatches than the reference host: a device profile calibrated here
    (``hardware calibrate``) gives its per-op time, measured as on the reference host; None: the reference's."""
    if not calibrated_per_op_s or calibrated_per_op_s <= 0:
        return 1.0
    return float(calibrated_per_op_s) / float(HOST.value("reference_host", "calibrate_per_op"))


def _module_types(tree: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    stack = [tree] if tree is not None else []
    while stack:
        node = stack.pop()
        out[node.path] = node.type
        stack.extend(node.children)
    return out
