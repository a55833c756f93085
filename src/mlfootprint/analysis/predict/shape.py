"""From a workload and its trace to the inputs of the step model: the layout and the model's shape."""
from __future__ import annotations

import math
from typing import Any


from ...core.errors import UserError
from ..count.params import parameter_stats
from ..memory import methods
from ..memory.states import fp8_weight_elements
from .step import ModelShape, communication_dtypes
from ...workload import Layout



def tokens_per_sample(spec: Any, wl: Any, trace: Any) -> float | None:
    if trace.token_unit == "tokens" and wl.batch:
        return trace.tokens / wl.batch
    facts = spec.facts or {}
    size, patch = facts.get("image_size"), facts.get("patch_size")
    if size and patch:
        return (int(size) // int(patch)) ** 2 + 1
    return None


def model_shape(spec: Any, wl: Any, trace: Any, global_batch: int | None = None) -> ModelShape:
    """What the step model needs; ``global_batch`` when the step covers more samples than the trace."""
    facts = spec.facts or {}
    traced = getattr(trace, "workload", None) or wl  # the workload as traced (its batch, its recomputation)
    stats = parameter_stats(trace)
    total = stats.total
    trainable = sum(math.prod(p.shape) for p in trace.params if p.trainable)
    expert_trainable = sum(math.prod(p.shape) for p in trace.params if p.trainable and p.expert)
    act_bytes = wl.precision_info.compute_bytes
    moe = trace.moe
    # the gradients' reduction dtype and the working weights' by layout case (ModelShape.layout_case: one device's
    # model below ZeRO-3, a model split below ZeRO-3, ZeRO-3), as Workload.grad_reduce_at / mixed_weights_at resolve
    cases = ((0, 1), (0, 2), (3, 1))
    gather_elem = communication_dtypes(wl.precision_info)[0]
    reduce_elem, reduce_elem_split, reduce_elem3 = (communication_dtypes(wl.precision_info, wl.grad_reduce_at(z, s))[1]
                                                    for z, s in cases)
    weight_bytes = float(total * act_bytes if wl.mixed else trace.param_bytes)
    if wl.precision == "fp8-mixed":
        weight_bytes = float(total * gather_elem)
        if wl.training and wl.fp8_weights:  # FP8 primary weights are gathered as they are held (memory/states.py)
            fp8 = fp8_weight_elements(trace)
            weight_bytes = float((total - fp8) * act_bytes + fp8 * methods.value("fp8", "primary_weight_bytes"))
    # fp32 working weights under mixed precision (PyTorch AMP; FSDP without param_dtype) are gathered and broadcast
    # in fp32
    fp32_cases = tuple(bool(wl.mixed and wl.mixed_weights_at(z, s) == "fp32") for z, s in cases)
    return ModelShape(
        batch=global_batch or wl.batch,
        tokens_per_sample=tokens_per_sample(spec, traced, trace),
        layers=facts.get("layers"),
        hidden=facts.get("hidden"),
        act_bytes=act_bytes,
        grad_bytes=float(trace.grad_bytes),
        weight_bytes=weight_bytes,
        param_bytes=float(trace.param_bytes),
        experts=int(getattr(moe, "experts", 0) or facts.get("experts") or 0),
        top_k=int(getattr(moe, "top_k", 0) or facts.get("experts_per_token") or 0),
        training=wl.training,
        # what the trace itself recomputed (its own workload's, not the layout's: a planner that chose full
        # recomputation on a trace without it still has it to add): full and selective-op run checkpointed blocks;
        # a trace under --recompute selective is the trace without it (trace/transforms.py) and recomputed nothing
        trace_recompute=traced.recompute if traced.training and traced.recompute in ("full", "selective-op")
        else "none",
        traced_batch=traced.batch,
        reduce_bytes=float(stats.trainable * reduce_elem),
        weight_elem_bytes=weight_bytes / total if total else float(gather_elem),
        reduce_elem_bytes=float(reduce_elem),
        reduce_bytes_zero3=float(stats.trainable * reduce_elem3),
        fp32_weight_cases=fp32_cases,
        reduce_bytes_split=float(stats.trainable * reduce_elem_split),
        reduce_elem_bytes_split=float(reduce_elem_split),
        reduce_elem_bytes_zero3=float(reduce_elem3),
        moe_layers=int(facts["moe_layers"]) if facts.get("moe_layers") else None,
        capacity_factor=float(facts["capacity_factor"]) if facts.get("capacity_factor") else None,
        heads=facts.get("heads"),
        kv_heads=facts.get("kv_heads") or facts.get("heads"),
        expert_weight_share=(stats.expert or 0) / total if total else 0.0,
        expert_grad_share=expert_trainable / trainable if trainable else 0.0,
        parallel_block=bool(facts.get("parallel_block")),
        head_dim=facts.get("head_dim") or ((facts.get("hidden") // facts.get("heads"))
                                           if facts.get("hidden") and facts.get("heads") else None),
    )


def global_batch(wl: Any) -> tuple[int, str | None]:
    """The samples one step covers, and a note when it is not ``--batch``.

    ``--batch`` is the global batch. Left at its default of 1 with several data-parallel replicas,
    it reads as one sample per replica (micro-batch × grad-accum each), as the memory model reads it.
    """
    dp = wl.dp
    if dp > 1 and wl.batch == 1 and "batch" not in getattr(wl, "given", set()):
        per = (wl.micro_batch or 1) * wl.grad_accum
        return dp * per, (f"no --batch: one step is {per} sample(s) on each of the {dp} data-parallel replicas, "
                          f"a global batch of {dp * per}")
    return wl.batch, None


def parallel_from(wl: Any) -> Layout:
    """The layout a workload asks for; one-line UserErrors when it is inconsistent.

    The micro-batch follows the memory model's reading (``mlfootprint.workload.micro_batch_of``):
    ``--micro-batch`` if given, else the per-replica batch / ``--grad-accum``.
    """
    tp, pp, ep, cp = wl.tp, wl.pp, wl.ep, wl.cp
    group = tp * pp * cp
    names = f"--tp {tp} × --pp {pp}" + (f" × --cp {cp}" if cp > 1 else "")
    if wl.devices is not None and wl.devices % group:
        raise UserError(f"--devices {wl.devices} is not divisible by {names} = {group}; "
                        f"use a device count that is a multiple of {group}, or change --tp/--pp/--cp")
    dp = wl.devices // group if wl.devices is not None else wl.dp
    if wl.devices is not None and wl.dp not in (1, dp):
        raise UserError(f"--dp {wl.dp} × {names} = {wl.dp * group} devices, but --devices is "
                        f"{wl.devices}; drop --dp (it follows from the others) or make them agree")
    if ep > 1 and dp % ep:
        raise UserError(f"--ep {ep} must divide the data-parallel degree {dp} (experts are sharded across data-parallel ranks)")
    batch, _ = global_batch(wl)
    if batch % dp:
        raise UserError(f"--batch {batch} (global) is not divisible by the {dp} data-parallel replicas; "
                        f"use a batch that is a multiple of {dp}")
    per_replica = batch // dp
    if wl.micro_batch is not None:
        if per_replica % wl.micro_batch:
            raise UserError(f"--micro-batch {wl.micro_batch} does not divide the per-replica batch {per_replica} "
                            f"(global batch {batch} / {dp} replicas)")
        if "grad_accum" in wl.given and wl.micro_batch * wl.grad_accum != per_replica:
            raise UserError(f"--micro-batch {wl.micro_batch} × --grad-accum {wl.grad_accum} = "
                            f"{wl.micro_batch * wl.grad_accum} samples per replica, but the global batch {batch} over "
                            f"{dp} replicas is {per_replica}; drop --grad-accum (it follows from the others) or make "
                            "them agree")
        mb = wl.micro_batch
    elif wl.grad_accum > 1:
        if per_replica % wl.grad_accum:
            raise UserError(f"--grad-accum {wl.grad_accum} does not divide the per-replica batch {per_replica}")
        mb = per_replica // wl.grad_accum
    else:
        mb = per_replica
    shard_group = wl.shard_group if (wl.training and wl.zero) else None
    if shard_group is not None and dp % shard_group:
        raise UserError(f"--shard-group {shard_group} does not divide the {dp} data-parallel ranks; "
                        f"use a divisor of {dp}")
    return Layout(dp=dp, tp=tp, pp=pp, ep=ep, zero=wl.zero if wl.training else 0, micro_batch=mb,
                  grad_accum=max(1, per_replica // mb),
                  recompute=wl.recompute if wl.training else "none", offload=wl.offload if wl.training else "none",
                  zeropp=bool(getattr(wl, "zeropp", False)), shard_group=shard_group,
                  tp_comm_overlap=bool(wl.tp_comm_overlap), tp_overlap=wl.tp_overlap,
                  pp_comm_overlap=bool(wl.pp_comm_overlap),
                  grad_reduce=wl.grad_reduce, tp_backward=wl.tp_backward, zero_impl=wl.zero_impl, etp=wl.etp,
                  cp=cp, vp=wl.vp,
                  schedule=wl.schedule, cp_comm=wl.cp_comm, sequence_parallel=wl.sequence_parallel_on,
                  offload_activations=getattr(wl, "offload_activations", 0.0) if wl.training else 0.0)
