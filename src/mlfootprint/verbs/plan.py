"""``plan``: ranked parallel layouts (TP × PP × DP × ZeRO × micro-batch × recompute) that fit on N devices."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.predict.prediction import predict_step, resolve_device
from ..analysis.predict.efficiency import efficiency_for
from ..analysis.predict.planner import plan as plan_layouts
from ..analysis.predict.roofline import peak_for_precision
from ..core.errors import UserError
from ..core.forked import check_jobs
from ..report.schema import Report
from ..report.sections import PlanLayout, PlanSection
from ..trace.cache import traced_step
from .runnable import default_precision, micro_batch_traces, planner_batch, planner_fixed
from ..workload import Workload
from .common import base_report, resolve_model, reuses_traces


@reuses_traces
def plan(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
         inputs_ref: str | None = None, *, efficiency: Any = None, top: int = 10, cache: bool = True,
         jobs: int | None = None) -> Report:
    """Ranked parallel layouts of ``workload.devices`` × ``workload.hardware`` that fit in memory.

    The workload's tp/pp/zero/micro_batch/recompute/offload, when given, fix those choices; its mode is
    training. Without a batch, the global batch is about 4M tokens (``plan_batch_tokens``), or for a LoRA
    fine-tune 64 samples (``finetune_batch_samples``), a multiple of the devices.

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count`; ``workload.hardware`` and
            ``workload.devices`` are needed.
        efficiency: efficiency-factor overrides, as for :func:`mlfootprint.predict`.
        top: how many fitting layouts to rank.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.
        jobs: processes that trace the layouts' micro-batches (``--jobs``); default None: one per CPU this process
            may use, at most four; 1: this process alone. Workers are forked copies of this process, on Linux only;
            the figures are the same whatever the split.

    Returns:
        A Report with a ``plan`` section: the best layout, its step time, MFU and bottleneck, and the ranking.

    Example:
        >>> rep = mf.plan("llama-2-70b", mf.Workload(precision="bf16-mixed", hardware="a100-80gb", devices=64))
        >>> rep.sections["plan"]["best"]
    """
    wl = (workload or Workload()).with_defaults(mode="train")
    if not wl.training:
        raise UserError("plan ranks training layouts; drop --mode or use --mode train")
    if not wl.hardware:
        raise UserError("plan needs --hardware ID (see: mlfootprint hardware list)")
    if not wl.devices:
        raise UserError("plan needs --devices N (how many devices to lay out)")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise UserError(f"--top must be a positive whole number, got {top}")
    jobs = check_jobs(jobs)
    n = wl.devices
    fixed = planner_fixed(wl)
    tp, pp, cp = fixed["tp"], fixed["pp"], fixed["cp"]
    for name, v in (("--tp", tp), ("--pp", pp), ("--cp", cp)):
        if v is not None and n % v:
            raise UserError(f"--devices {n} is not divisible by {name} {v}")
    if "grad_accum" in wl.given:
        raise UserError("plan chooses the micro-batch and with it the accumulation (the global batch over the "
                        "data-parallel replicas); drop --grad-accum, or fix --micro-batch")
    if wl.offload_activations:
        raise UserError("plan does not search activation offload; plan without --offload-activations, then check its "
                        "layout with it in 'mlfootprint memory' and 'mlfootprint predict'")
    dev = resolve_device(wl.hardware)
    wl, precision_note = default_precision(wl, dev)
    peak_for_precision(dev, wl.precision)
    eff = efficiency_for(dev, efficiency)
    spec = resolve_model(model, inputs, inputs_ref)
    batch, notes = planner_batch(spec, wl, n, eff)
    # The trace is the whole model at the global batch, without recomputation, on one device: the planner
    # scales it to each layout.
    traced_wl = wl.with_changes(batch=batch, recompute="none", zero=0, micro_batch=None, dp=1, tp=1, pp=1, cp=1,
                                vp=1, schedule="1f1b", devices=None, offload="none", zeropp=False, given=wl.given)
    # a fixed --recompute full is traced at each micro-batch, as predict traces it (rows and predict agree)
    micro_wl = traced_wl.with_changes(recompute="full", given=traced_wl.given) if fixed["recompute"] == "full" \
        else traced_wl
    # (while the global batch is traced, the micro-batches the planner will probably ask for are, on a second CPU)
    trace_at = micro_batch_traces(spec, micro_wl, lambda s, w: traced_step(s, w, checkpoint_early_stop=False),
                                  traced_wl, dev, n, fixed["micro_batch"], checkpoint_early_stop=False, jobs=jobs)
    try:
        tr = traced_step(spec, traced_wl, checkpoint_early_stop=False)
        res = plan_layouts(spec, traced_wl, tr, dev, n, efficiency=efficiency, top=top, **fixed, trace_at=trace_at)
    finally:
        trace_at.end()
    best = res.best
    # the report's workload is the one the best layout runs: the traced sequence, the planner's layout
    par = best.par
    rep = base_report("plan", spec, wl.with_defaults(
        batch=batch, seq=tr.tokens // batch if tr.token_unit == "tokens" else None, dp=par.dp, tp=par.tp, pp=par.pp, zero=par.zero, micro_batch=par.micro_batch,
        recompute=par.recompute, zeropp=par.zeropp, cp=par.cp, vp=par.vp, schedule=par.schedule, cp_comm=par.cp_comm,
        grad_accum=max(1, batch // (par.dp * par.micro_batch))))
    if precision_note:
        rep.assume(precision_note, key=True)
    section = PlanSection(
        hardware=dev.id, devices=n, global_batch=res.global_batch, tokens_per_step=tr.tokens, best=best.par.label(),
        step_s=best.st.step_s, tokens_per_s=best.tokens_per_s, mfu=best.mfu, hfu=best.hfu,
        peak_bytes=best.peak_bytes, device_bytes=dev.memory_bytes, bottleneck=best.st.bottleneck,
        explanation=res.explanation, considered=res.considered, memory_checked=res.memory_checked,
        plan_s=res.plan_s, layouts=[PlanLayout(rank=i + 1, **c.to_dict()) for i, c in enumerate(res.layouts)])
    rep.add(section, {"step_s": "modeled", "tokens_per_s": "modeled", "mfu": "modeled", "hfu": "modeled",
                      "peak_bytes": "modeled", "device_bytes": "published"})
    for a in notes + res.assumptions:
        rep.assume(a)
    for a in predict_step(spec, traced_wl, tr, dev, efficiency=efficiency, layout=best.par).assumptions:
        rep.assume(a)
    return rep
