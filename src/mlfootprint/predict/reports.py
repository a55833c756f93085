"""Report-returning entry points of prediction: what the `predict`, `plan` and `mfu` verbs call.

    import mlfootprint as mf
    rep = mf.predict("gpt2", mf.Workload(batch=8, seq=1024, hardware="a100-80gb", tokens=1e9))
    rep.sections["time"]["train_s"]
    rep = mf.plan("llama-2-70b", mf.Workload(precision="bf16-mixed", hardware="a100-80gb", devices=64))
    rep.sections["plan"]["layouts"][0]
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..core.errors import UserError
from ..report.schema import Report
from ..workload import RECOMPUTE, Workload


def predict(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
            inputs_ref: str | None = None, *, efficiency: Any = None, mfu: float | None = None,
            hfu: float | None = None, flops_per_device: float | None = None, deadline: str | float | None = None,
            deadline_mfu: float | None = None) -> Report:
    """Step time, tokens/s, MFU/HFU, time to train, device-hours (+ memory, footprint) for ``workload.hardware``.

    ``mfu`` / ``hfu`` / ``flops_per_device`` replace the roofline with a given utilization; ``deadline``
    ('90d', or seconds) with ``workload.tokens`` adds the devices needed to finish in time.
    """
    from ..api import _base_report, add_count_sections
    from .api import parse_duration, resolve_device, trace_for_prediction
    from .efficiency import efficiency_for
    from .roofline import peak_for_precision
    from .section import extend
    from .shape import parallel_from

    wl = workload or Workload()
    if not wl.hardware:
        raise UserError("predict needs --hardware ID (see: mlfootprint hardware list; 'this' after "
                        "mlfootprint hardware calibrate)")
    deadline_s = parse_duration(deadline) if deadline is not None else None
    if deadline_s and not wl.tokens:
        raise UserError("--deadline needs --tokens N (how many tokens to train on)")
    if deadline_mfu is not None and not (0 < deadline_mfu <= 1):
        raise UserError(f"--deadline-mfu is a fraction between 0 and 1, got {deadline_mfu:g}")
    # The device, the precision's peak, the overrides and the layout are checked before the (slower) trace.
    dev = resolve_device(wl.hardware)
    peak_for_precision(dev, wl.precision)
    efficiency_for(dev, efficiency)
    parallel_from(wl)
    spec, wl, tr, params = trace_for_prediction(model, wl, inputs, inputs_ref)
    rep = _base_report("predict", spec, wl)
    add_count_sections(rep, tr, params, wl, ops=False)
    rep.sections["flops"].pop("by_module", None)
    from ..footprint import section as footprint_section
    from ..memory import section as memory_section

    memory_section.extend(rep, spec, wl, tr)
    extend(rep, spec, wl, tr, efficiency=efficiency, mfu=mfu, hfu=hfu, flops_per_device=flops_per_device,
           deadline_s=deadline_s, deadline_mfu=deadline_mfu)
    footprint_section.extend(rep, spec, wl, tr)  # energy, CO2e, water, cost
    return rep


def plan(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
         inputs_ref: str | None = None, *, efficiency: Any = None, top: int = 10, table: bool = False) -> Report:
    """Ranked parallel layouts of ``workload.devices`` × ``workload.hardware`` that fit in memory.

    The workload's --tp/--pp/--zero/--micro-batch/--recompute/--offload, when given, fix those choices.
    Without --batch, the global batch is about 4M tokens (``plan_batch_tokens``), a multiple of the devices.
    ``table``: also a ``ranked`` dict of one line per layout, for the terminal and Markdown renderers.
    """
    from ..api import _base_report, model_spec
    from ..models.hf import default_seq
    from .api import predict_step, resolve_device, trace_for_prediction
    from .efficiency import efficiency_for
    from .planner import plan as _plan
    from .roofline import peak_for_precision

    wl = workload or Workload()
    if "mode" not in wl.given:
        wl.mode = "train"
    if not wl.training:
        raise UserError("plan ranks training layouts; drop --mode or use --mode train")
    if not wl.hardware:
        raise UserError("plan needs --hardware ID (see: mlfootprint hardware list)")
    if not wl.devices:
        raise UserError("plan needs --devices N (how many devices to lay out)")
    if top < 1:
        raise UserError(f"--top must be a positive whole number, got {top}")
    n = wl.devices
    tp = wl.tp if "tp" in wl.given else None
    pp = wl.pp if "pp" in wl.given else None
    for name, v in (("--tp", tp), ("--pp", pp)):
        if v is not None and n % v:
            raise UserError(f"--devices {n} is not divisible by {name} {v}")
    dev = resolve_device(wl.hardware)
    peak_for_precision(dev, wl.precision)
    eff = efficiency_for(dev, efficiency)

    spec = model_spec(model, inputs, inputs_ref)
    notes: list[str] = []
    if "batch" not in wl.given:
        seq = wl.seq or (default_seq(spec) if spec.source != "factory" else None)
        if seq and spec.task not in ("image-classification", "custom"):
            want = max(1, math.ceil(eff["plan_batch_tokens"] / seq))
            wl.batch = math.ceil(want / n) * n
            notes.append(f"global batch {wl.batch} × {seq} tokens: about {eff['plan_batch_tokens']:.4g} tokens, "
                         f"rounded up to a multiple of {n} devices ({eff.factors['plan_batch_tokens'].source})")
        else:
            wl.batch = n
            notes.append(f"global batch {n}: one sample per device (pass --batch for another)")
    # The trace is the whole model at the global batch, without recomputation, on one device: the planner
    # scales it to each layout.
    fixed = {"zero": wl.zero if "zero" in wl.given else None, "offload": wl.offload,
             "micro_batch": wl.micro_batch, "recompute": wl.recompute if "recompute" in wl.given else None}
    wl.recompute, wl.zero, wl.micro_batch, wl.dp, wl.tp, wl.pp, wl.devices = "none", 0, None, 1, 1, 1, None
    wl.offload, wl.zeropp = "none", False
    wl.validate()
    spec, wl, tr, params = trace_for_prediction(spec, wl)
    res = _plan(spec, wl, tr, dev, n, efficiency=efficiency, top=top, tp=tp, pp=pp, **fixed)

    rep = _base_report("plan", spec, wl)
    best = res.best
    data: dict[str, Any] = {
        "hardware": dev.id, "devices": n, "global_batch": res.global_batch, "tokens_per_step": tr.tokens,
        "best": best.par.label(), "step_s": best.st.step_s, "tokens_per_s": best.tokens_per_s,
        "mfu": best.mfu, "hfu": best.hfu, "peak_bytes": best.peak_bytes, "device_bytes": dev.memory_bytes,
        "bottleneck": best.st.bottleneck, "explanation": res.explanation,
        "considered": res.considered, "memory_checked": res.memory_checked, "plan_s": res.plan_s,
        "layouts": [dict(rank=i + 1, **c.to_dict()) for i, c in enumerate(res.layouts)],
    }
    if table:
        data.pop("layouts")
        data["ranked"] = {f"#{i + 1}": f"{c.par.label()} — {c.st.step_s:.3g} s/step, {c.tokens_per_s:,.0f} tokens/s, "
                                        f"MFU {c.mfu:.1%}, {c.peak_bytes / 1e9:.1f} GB, {c.st.bottleneck}"
                          for i, c in enumerate(res.layouts)}
    rep.set_section("plan", data, {"step_s": "modeled", "tokens_per_s": "modeled", "mfu": "modeled", "hfu": "modeled",
                                   "peak_bytes": "modeled", "device_bytes": "published"})
    for a in notes + res.assumptions:
        rep.assume(a)
    for a in predict_step(spec, wl, tr, dev, efficiency=efficiency, layout=best.par).assumptions:
        rep.assume(a)
    return rep


def mfu(model: Any = None, *, tokens_per_s: float | None = None, step_s: float | None = None,
        batch: int | None = None, seq: int | None = None, hardware: str | None = None, devices: int = 1,
        precision: str = "bf16", peak_flops: float | None = None, recompute: str = "none",
        params: float | None = None, layers: int | None = None, heads: int | None = None,
        head_dim: int | None = None, flops_per_token: float | None = None, inputs: Sequence[Any] = (),
        inputs_ref: str | None = None) -> Report:
    """MFU and HFU from a measured throughput (the `utilization` section).

    FLOPs per token from exactly one of: a MODEL (traced training step), ``params`` with ``layers``,
    ``heads``, ``head_dim`` and ``seq`` (PaLM appendix B: 6N + 12·L·H·Q·T), or ``flops_per_token``.
    """
    from ..core.errors import suggest
    from ..hardware.catalog import dtype_for_precision
    from ..workload import PRECISIONS
    from .api import mfu_from_throughput, palm_flops_per_token, resolve_device

    for name, v, integer in (("--params", params, False), ("--layers", layers, True), ("--heads", heads, True),
                             ("--head-dim", head_dim, True), ("--flops-per-token", flops_per_token, False),
                             ("--tokens-per-s", tokens_per_s, False), ("--step-s", step_s, False),
                             ("--batch", batch, True), ("--seq", seq, True), ("--devices", devices, True),
                             ("--peak-flops", peak_flops, False)):
        if v is not None and (v <= 0 or (integer and int(v) != v)):
            raise UserError(f"{name} must be a positive {'whole ' if integer else ''}number, got {v:g}")
    if recompute not in RECOMPUTE:
        raise UserError(f"unknown --recompute {recompute!r}; choose one of: {', '.join(RECOMPUTE)}.{suggest(recompute, RECOMPUTE)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown --precision {precision!r}; choose one of: {', '.join(PRECISIONS)}.{suggest(precision, PRECISIONS)}")
    if tokens_per_s is not None and step_s is not None:
        raise UserError("give --tokens-per-s or --step-s (with --batch and --seq), not both")
    if tokens_per_s is None and step_s is None:
        raise UserError("mfu needs a measured throughput: --tokens-per-s X, or --step-s S with --batch B and --seq T")

    dtype = dtype_for_precision(precision)
    if peak_flops is not None:
        peak, peak_src, hw_id = peak_flops, "given (--peak-flops)", "given"
    else:
        if not hardware:
            raise UserError("mfu needs --hardware ID (see: mlfootprint hardware list) or --peak-flops FLOP/S")
        dev = resolve_device(hardware)
        peak = dev.peak_for(dtype)
        peak_src, hw_id = dev.source_of(f"peak_flops.{dtype}"), dev.id

    sources = [n for n, v in (("MODEL", model), ("--params", params), ("--flops-per-token", flops_per_token))
               if v is not None]
    if len(sources) != 1:
        raise UserError("give exactly one source of FLOPs per token: a MODEL, --params with --layers/--heads/--head-dim "
                        f"and --seq, or --flops-per-token (got {', '.join(sources) or 'none'})")
    rep = Report(verb="mfu")
    notes: list[str] = []
    hardware_per_token = None
    if model is not None:
        from ..count.flops import flop_summary
        from .api import trace_for_prediction

        wl = Workload(batch=batch or 1, seq=seq, mode="train", precision=precision, recompute=recompute)
        wl.given = {"batch", "mode", "precision", "recompute"} | ({"seq"} if seq else set())
        spec, wl, tr, _ = trace_for_prediction(model, wl, inputs, inputs_ref)
        fs = flop_summary(tr)
        per_token = fs["model"] / tr.tokens
        hardware_per_token = fs["hardware"] / tr.tokens
        seq = seq or (tr.tokens // wl.batch if tr.meta.get("token_unit") == "tokens" else None)
        rep.set_section("model", spec.to_dict())
        formula = (f"traced training step of {spec.name} at seq {seq}: model FLOPs (forward + backward matrix work, "
                   "attention as the full square) per token")
        notes.extend(tr.assumptions)
    elif params is not None:
        missing = [n for n, v in (("--layers", layers), ("--heads", heads), ("--head-dim", head_dim), ("--seq", seq))
                   if v is None]
        if missing:
            raise UserError(f"--params needs {', '.join(missing)} for the attention term of 6N + 12·L·H·Q·T")
        per_token = palm_flops_per_token(params, layers, heads, head_dim, seq)
        attn = 12.0 * layers * heads * head_dim * seq
        formula = "6N + 12·L·H·Q·T per token (PaLM, Chowdhery et al. 2022, appendix B; attention as the full square)"
        if recompute == "full":
            hardware_per_token = per_token + 2.0 * params + attn / 3.0
            notes.append("HFU with full recomputation: one more forward pass, 2N + 4·L·H·Q·T per token")
        elif recompute == "selective":
            hardware_per_token = per_token + attn / 3.0
            notes.append("HFU with selective recomputation: the attention products of the forward again, 4·L·H·Q·T per token")
    else:
        per_token = flops_per_token
        formula = "given FLOPs per token (--flops-per-token)"
        if recompute != "none":
            notes.append("--recompute is ignored with --flops-per-token: HFU equals MFU")

    if tokens_per_s is not None:
        tps = tokens_per_s
        thr_note = f"{tps:.6g} tokens/s (given)"
    else:
        if not batch or not seq:
            raise UserError("--step-s needs --batch B and --seq T (tokens per step = B × T)")
        tps = batch * seq / step_s
        thr_note = f"{batch} × {seq} tokens per step / {step_s:g} s = {tps:.6g} tokens/s"
    res = mfu_from_throughput(per_token, tps, devices, peak, hardware_per_token)
    data = {
        "mfu": res["mfu"], "hfu": res["hfu"],
        "model_flops_per_token": res["model_flops_per_token"], "hardware_flops_per_token": res["hardware_flops_per_token"],
        "tokens_per_s": tps, "devices": devices, "hardware": hw_id, "peak_dtype": dtype,
        "peak_flop_per_s": peak, "achieved_flop_per_s": res["achieved_flop_per_s"],
        "achieved_per_device_flop_per_s": res["achieved_per_device_flop_per_s"],
        "formula": formula,
    }
    if seq:
        data["seq"] = seq
    rep.set_section("utilization", data, {"mfu": "modeled", "hfu": "modeled",
                                          "model_flops_per_token": "counted" if model is not None else "modeled",
                                          "peak_flop_per_s": "published" if peak_flops is None else "assumed"})
    rep.assume(f"MFU = model FLOPs per token × tokens/s / (devices × dense {dtype} peak); HFU adds recomputation "
               "(PaLM appendix B definitions)")
    rep.assume(f"throughput: {thr_note}")
    rep.assume(f"peak: {peak / 1e12:.4g} TFLOP/s per device ({peak_src})")
    for n in notes:
        rep.assume(n)
    return rep
