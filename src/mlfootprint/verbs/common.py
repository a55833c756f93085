"""What every model verb does first: resolve the MODEL, trace the workload, start the report.

The verbs are the only place a Report is built: each takes the typed results of the analyses and writes
them into report sections (``mlfootprint.report.sections``) with their provenance and assumptions.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..analysis.count.flops import FlopSummary, by_module, by_op, flop_summary
from ..analysis.count.params import ParamStats, parameter_stats
from ..analysis.predict.inference import decode_model
from ..models import ModelSpec, resolve
from ..models.factory import load_callable
from ..report.schema import Report
from ..report.sections import FlopsSection, ModelSection, ParamsSection, WorkloadSection
from ..trace.records import Trace
from ..trace.cache import reusing_traces, traced_step
from ..trace.target import target_of
from ..workload import Workload

if TYPE_CHECKING:
    import torch

# The definitions behind the numbers, stated in every model report (DESIGN.md's trust contract).
CONVENTIONS = {
    "FLOP": "one floating-point multiply or add; a multiply-accumulate (MAC) is 2 FLOPs",
    "model FLOPs": "matrix-class work (matmul, convolution, attention products, recurrent matmuls, einsum); "
                   "the MFU numerator. Elementwise, normalization, softmax and reduction FLOPs are flops.other",
    "backward": "counted from the real backward operators; activation recomputation is hardware FLOPs (HFU), not model FLOPs",
    "causal attention": "counted as the full square; flops.attention_causal_halved halves causal attention",
    "flops.other": "1 FLOP per floating-point output element of a pointwise op (compound ops such as addcmul more), "
                   "1 per input element of a reduction, 5 per softmax element, 5-7 per normalized element",
    "units": "JSON in base units with the unit in the key; GB = 1e9 bytes, GiB = 2^30 bytes",
}

_COUNTED_FLOPS = ("forward", "backward", "model", "other", "optimizer", "recompute", "hardware", "total", "attention",
                  "attention_causal_halved", "scan", "per_token")


_Verb = TypeVar("_Verb", bound=Callable[..., Any])


def reuses_traces(verb: _Verb) -> _Verb:
    """A verb that traces: its ``cache`` keyword (default True; ``--no-cache``) decides whether the persistent
    trace cache is used, and within the call a trace asked for twice is made once (``trace/cache.py``)."""
    signature = inspect.signature(verb)
    if "cache" not in signature.parameters:
        raise TypeError(f"{verb.__name__} needs a 'cache' keyword to reuse traces")

    @functools.wraps(verb)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with reusing_traces(bound.arguments["cache"]):
            return verb(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def resolve_model(model: str | torch.nn.Module | ModelSpec | None, inputs: Sequence[Any] = (),
                  inputs_ref: str | None = None) -> ModelSpec:
    """What the user named: a MODEL string (None: the bundled default), an nn.Module instance, or a ModelSpec."""
    if isinstance(model, ModelSpec):
        return dataclasses.replace(model, inputs_factory=load_callable(inputs_ref, "inputs callable")) if inputs_ref else model
    # An nn.Module or a tensor exists only once the caller has imported torch: a MODEL string resolves without it.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from ..models.module import spec_from_module

        return spec_from_module(model, inputs, inputs_ref)
    tensor = torch.Tensor if torch is not None else ()
    return resolve(model, [str(i) for i in inputs if not isinstance(i, tensor)], inputs_ref)


def traced(model: Any, workload: Workload | None, inputs: Sequence[Any] = (),
           inputs_ref: str | None = None) -> tuple[ModelSpec, Workload, Trace]:
    """Resolve and trace: the one pass every figure of a model verb comes from."""
    wl = workload or Workload()
    spec = resolve_model(model, inputs, inputs_ref)
    return spec, wl, traced_step(spec, wl)


def base_report(verb: str, spec: ModelSpec | None, wl: Workload | None) -> Report:
    """A report with the model and the workload (its defaults marked assumed) and the conventions."""
    rep = Report(verb=verb)
    if spec is not None:
        rep.add(model_section(spec))
    if wl is not None:
        data = wl.to_dict()
        data["sequence_parallel"] = wl.sequence_parallel_on
        data["kernels"] = target_of(wl).kernels
        prov = {key: "assumed" for key in data["defaults"]}
        if not wl.hardware:
            prov["kernels"] = "assumed"
        rep.add(WorkloadSection(**data), prov)
        if wl.training_implied_by:
            options = ", ".join("--" + name.replace("_", "-") for name in wl.training_implied_by)
            rep.assume(f"mode train: implied by {options}, which only a training step has (no --mode given); pass "
                       "--mode inference or generate to serve the model instead", key=True)
    rep.conventions = dict(CONVENTIONS)
    return rep


def _add_decode_flops(rep: Report, data: dict[str, Any], spec: ModelSpec, tr: Trace, wl: Workload) -> None:
    """The decode steps after the prompt, as predict times them (``analysis/predict/inference.py``): each new token's
    forward, its linear layers' FLOPs per token from the traced prefill plus 4·layers·heads·head_dim per context
    position, the context growing from the prompt's length to prompt + gen_tokens − 1."""
    dm = decode_model(spec, wl, tr)
    batch = tr.memory.batch or wl.batch
    if dm is None or not batch:
        return
    prompt, g = tr.tokens // batch, int(wl.gen_tokens)
    data["decode"] = int(round(dm.flops(batch, prompt, g)))
    rep.mark("flops.decode", "modeled")
    rep.assume(f"--mode generate: flops.model, forward and total are the prompt's prefill ({prompt} tokens a sequence); "
               f"flops.decode is the {g} decode steps after it (each new token's forward over a context of {prompt} to "
               f"{prompt + g - 1} positions: the prefill's linear FLOPs per token plus 4·layers·heads·head_dim per "
               "position)", key=True)


def model_section(spec: ModelSpec) -> ModelSection:
    return ModelSection(**spec.to_dict())


def add_count(rep: Report, tr: Trace, wl: Workload, *, ops: bool = True, modules: bool = True,
              spec: ModelSpec | None = None) -> tuple[ParamStats, FlopSummary]:
    """The params and flops sections (and their assumptions) from one trace; under --mode generate with the model's
    ``spec``, the decode steps' FLOPs too (``flops.decode``)."""
    params = parameter_stats(tr)
    rep.add(ParamsSection(**vars(params)), {k: "counted" for k in vars(params) if k != "by_dtype" and
                                             getattr(params, k) is not None})
    if params.active != params.total:
        rep.mark("params.active", "modeled")
    flops = flop_summary(tr)
    if tr.causal and any(r.attention_flops and r.causal is None for r in tr.records):
        rep.assume("attention in this causal language model is causal, for the causal-halved figure")
    section = FlopsSection(**{k: v for k, v in vars(flops).items() if k != "unsupported_ops"},
                           unsupported_ops=flops.unsupported_ops or None,
                           by_module=by_module(tr) if modules else None, by_op=by_op(tr) if ops else None,
                           trace_s=round(tr.trace_s, 3), token_unit=tr.token_unit)
    data = rep.add(section)
    for key in _COUNTED_FLOPS:
        if data.get(key) is not None:
            rep.mark(f"flops.{key}", "counted")
    if spec is not None and wl.mode == "generate" and wl.gen_tokens:
        _add_decode_flops(rep, data, spec, tr, wl)
    for a in tr.assumptions:
        rep.assume(a, key=a.startswith(("MoE routing", "prompt length", "generation runs to")))
    bounded = sorted({r.op.split(".")[1] for r in tr.records if r.upper_bound})
    if bounded:
        rep.assume("packed (varlen) attention (" + ", ".join(bounded) + "): its sequence lengths are values the "
                   "fake trace cannot read, so its FLOPs are the upper bound min(total_q·max_k, max_q·total_k) per "
                   "head, not the exact Σ q_i·k_i")
    if tr.unsupported:
        rep.assume("operators without a FLOP formula are listed in flops.unsupported_ops and contribute no FLOPs: "
                   + ", ".join(f"{k} ×{v}" for k, v in sorted(tr.unsupported.items())))
    workload = rep.get("workload")
    if workload is not None and "batch" not in wl.given and tr.memory.batch != workload.get("batch"):
        workload["batch"] = tr.memory.batch  # the batch of --input shapes or of an inputs callable
        rep.assume(f"batch {tr.memory.batch}: the first dimension of the model's inputs, as no --batch was given")
    add_default_seq(rep, tr, wl.batch)
    return params, flops


def add_default_seq(rep: Report, tr: Trace, traced_batch: int | None) -> None:
    """The report's sequence length when none was given: the model's default, as ``tr`` (of ``traced_batch``
    samples) traced it, with its assumption."""
    workload = rep.get("workload")
    if workload is not None and workload.get("seq") is None and tr.token_unit == "tokens" and traced_batch:
        workload["seq"] = tr.tokens // traced_batch  # the model's default length, as traced
        if not any(a.startswith("prompt length") for a in tr.assumptions):  # else the prompt's own assumption
            rep.assume(f"sequence length {workload['seq']}: the model's context length (at most 4096), as no --seq "
                       "was given", key=True)
