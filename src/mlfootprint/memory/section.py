"""The ``memory`` report section (for ``analyze`` and the ``memory`` verb) and the memory report itself."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..report.schema import Report
from ..trace.records import Trace
from ..workload import Workload
from . import methods
from .api import MemoryEstimate, device_bytes_for, max_batch, memory_model
from .layout import Layout, check_against_model, micro_batch_of

_COMPONENTS = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "kv_cache_bytes",
               "other_bytes", "peak_bytes", "host_bytes", "nvme_bytes")


def section_from_estimate(rep: Report, est: MemoryEstimate, wl: Workload, extra: dict[str, Any] | None = None) -> None:
    data = est.to_dict()
    for key in ("weights_compression_vs_bf16_ratio", "quantized_compression_vs_bf16_ratio"):
        if est.breakdown.get(key):
            data[key] = est.breakdown[key]
    if extra:
        data.update(extra)
    prov = {k: v for k, v in est.provenance.items() if k in data}
    rep.set_section("memory", data, prov)
    _assumptions(rep, est, wl)


def _assumptions(rep: Report, est: MemoryEstimate, wl: Workload) -> None:
    lay = est.layout
    training = wl.training
    if training:
        rep.assume("memory: the steady-state training step (step ≥ 2): optimizer states exist for the whole step; "
                   "gradients are freed between steps (zero_grad(set_to_none=True), PyTorch's default) and grow "
                   "during backward, unless accumulation, pipelining, ZeRO-2/3 or offload keep them for the whole step")
        if wl.precision.endswith("-mixed"):
            rep.assume("memory: mixed precision as in Megatron-LM/DeepSpeed and the ZeRO paper: 16-bit working weights "
                       "and gradients (2 + 2 bytes/param), fp32 master weights with the optimizer states "
                       "(K = 12 bytes/param for Adam); PyTorch autocast over fp32 weights instead keeps 4 + 4 + 8 and "
                       "16-bit weight copies during forward and backward")
        if wl.optimizer == "adam-8bit":
            rep.assume("memory: adam-8bit as bitsandbytes keeps it: two 8-bit states plus one fp32 absmax per block of "
                       f"{methods.value('adam_8bit', 'block_size')} values each; tensors under "
                       f"{methods.value('adam_8bit', 'min_8bit_size'):,} elements keep 32-bit states")
        if wl.optimizer == "adafactor":
            rep.assume("memory: Adafactor keeps the factored second moment (row and column statistics of each matrix, "
                       "a full vector for 1-D parameters) and no first moment (torch.optim.Adafactor)")
        if wl.optimizer == "zo-sgd":
            rep.assume("memory: zo-sgd (MeZO, Malladi et al. 2023): two forward passes without autograd, no gradients, "
                       "no optimizer states; the perturbation z is regenerated from a seed, one tensor at a time")
    if wl.quant != "none":
        if wl.lora_rank:
            dq = "double-quantized absmax (8-bit, one fp32 constant per 256 blocks), as in the QLoRA paper" \
                if methods.value("qlora", "double_quant") else "fp32 absmax per block"
            rep.assume(f"memory: QLoRA base weights in 4-bit NF4, blocks of {methods.value('qlora', 'block_size')} with "
                       f"{dq}; linear layers inside the blocks only (embeddings, head, norms stay 16-bit)")
        else:
            g = methods.value("quant", "group_size")
            rep.assume(f"memory: {wl.quant} weight-only quantization of the linear layers inside the blocks: "
                       + (f"symmetric, one fp16 scale per group of {g} (GPTQ/AWQ default); " if wl.quant != "fp8"
                          else "one fp32 scale per tensor; ")
                       + "embeddings, head and norms stay in the compute dtype")
    if lay is not None and (lay.tp > 1 or lay.pp > 1):
        rep.assume("memory: tensor parallelism divides every matrix by --tp and the activations between column- and "
                   "row-parallel linears (Korthikanti et al. 2022); norms, residual stream and embeddings outputs are "
                   "replicated (no sequence parallelism); pipeline stages hold min(pp − stage, grad_accum) micro-batches "
                   "(1F1B)")
    if getattr(wl, "zeropp", False):
        rep.assume("memory: ZeRO++ is modelled as ZeRO-3 (its hierarchical partitioning keeps a secondary copy of the "
                   "weights within a node, which is not added)")
    if wl.mode == "generate":
        rep.assume("memory: KV cache = 2 · layers · kv_heads · head_dim · (prompt + generated tokens) · batch · bytes "
                   "(16-bit cache; grouped-query aware); prefill keeps only the last position's logits")
    rep.assume(f"memory: other_bytes = {est.other_bytes:,} bytes of framework overhead per device (CUDA context, "
               "workspaces, allocator fragmentation), an assumption: override with --other-bytes"
               + ("" if wl.other_bytes is not None else " (default in memory/data/methods.toml [framework])"))
    rep.assume("memory: activations come from the traced step's allocation timeline (every tensor the step "
               "creates and frees, real dtypes and sizes); storages a kernel allocates internally outside PyTorch's "
               "allocator (cuDNN/oneDNN workspaces) are not seen")
    for note in est.assumptions:
        rep.assume("memory: " + note)


def extend(rep: Report, spec: Any, wl: Workload, trace: Trace) -> None:
    """Add the ``memory`` section to a report made from one trace (used by ``analyze``)."""
    if not (trace.meta.get("memory") or {}):
        return
    model = memory_model(spec, wl, trace)
    est = model.per_device(model.layout())
    dev, prov, src = device_bytes_for(wl)
    est = est.with_device(dev, prov or "assumed")
    extra = {}
    if dev is not None and src:
        extra["device_source"] = src
    section_from_estimate(rep, est, wl, extra)


def memory_report(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
                  inputs_ref: str | None = None, *, device_bytes: int | None = None, find_max_batch: bool = False,
                  other_bytes: int | None = None) -> Report:
    """Per-device memory by component, whether it fits, and (``find_max_batch``) the largest batch that fits.

    The model is traced at the per-device micro-batch (``--batch / (dp × grad_accum)``).
    """
    from ..api import _base_report, model_spec
    from ..count.params import parameter_stats
    from ..trace.run import trace as run_trace

    wl = workload or Workload()
    if other_bytes is not None:
        wl = replace(wl, other_bytes=int(other_bytes))
        wl.given = set(workload.given if workload else ()) | {"other_bytes"}
    spec = model_spec(model, inputs, inputs_ref)
    if spec.source == "module":
        spec.source = "factory"
    layout = Layout.from_workload(wl)
    layout.validate()
    check_against_model(layout, spec.facts or {}, None, wl.training)
    mb = micro_batch_of(wl)
    traced_wl = replace(wl, batch=mb, micro_batch=None)
    traced_wl.given = set(wl.given) | ({"batch"} if "batch" in wl.given or mb != 1 else set())
    tr, built = run_trace(spec, traced_wl)
    params = parameter_stats(built.module, built.moe)
    tr.meta["params"] = params
    tr.meta["moe"] = built.moe
    del built
    rep = _base_report("memory", spec, wl)
    rep.set_section("params", {k: v for k, v in params.items()}, {k: "counted" for k in params if k != "by_dtype"})
    mm = memory_model(spec, traced_wl, tr)
    if "batch" not in wl.given and not wl.micro_batch and wl.batch == 1:
        layout = layout.replace(micro_batch=mm.traced_batch)  # the batch of --input shapes / an inputs callable
    est = mm.per_device(layout)
    prov = "assumed"
    src = "--device-memory" if device_bytes is not None else ""
    if device_bytes is None:
        device_bytes, prov, src = device_bytes_for(wl)
    est = est.with_device(device_bytes, prov or "assumed")
    extra: dict[str, Any] = {}
    if device_bytes is not None and src:
        extra["device_source"] = src
    if find_max_batch:
        if device_bytes is None:
            from ..core.errors import UserError

            raise UserError("--max-batch needs a device memory size: give --device-memory 80GB or --hardware ID")
        probes: list[tuple[int, int, bool]] = []
        best = max_batch(spec, wl, device_bytes, trace=tr, probes=probes, other_bytes=wl.other_bytes)
        extra["max_micro_batch"] = best
        extra["max_batch"] = best * layout.dp * layout.grad_accum
        extra["max_batch_traces"] = sum(1 for *_, new in probes if new)  # traces made by the search itself
    section_from_estimate(rep, est, wl, extra)
    if find_max_batch:
        rep.mark("memory.max_batch", "counted")
        rep.mark("memory.max_micro_batch", "counted")
        rep.assume("memory: max_batch is the largest global batch (max_micro_batch × dp × grad_accum) whose traced "
                   "peak fits; found by re-tracing (a guess from one trace, then galloping and bisection), "
                   "each verdict from a trace at that micro-batch")
    for a in tr.assumptions:
        rep.assume(a)
    return rep
