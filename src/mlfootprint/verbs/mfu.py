"""``mfu``: MFU and HFU from a measured throughput — the check a reader makes on a paper's numbers."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis.count.flops import flop_summary
from ..analysis.predict.prediction import mfu_from_throughput, palm_flops_per_token, resolve_device
from ..core.errors import UserError
from ..core.validate import number, whole
from ..core.precision import precision
from ..report.schema import Report
from ..report.sections import TimeSection
from ..trace.cache import traced_step
from ..workload import RECOMPUTE, Workload, _check_choice
from .common import base_report, model_section, resolve_model, reuses_traces


@dataclass
class _PerToken:
    """Model (and hardware) FLOPs per token, and where they came from."""

    model: float
    hardware: float | None
    formula: str
    seq: int | None
    notes: list[str] = field(default_factory=list)
    spec: Any = None


@reuses_traces
def mfu(model: Any = None, *, tokens_per_s: float | None = None, step_s: float | None = None,
        batch: int | None = None, seq: int | None = None, hardware: str | None = None, devices: int = 1,
        precision: str = "bf16", peak_flops: float | None = None, recompute: str = "none",
        params: float | None = None, layers: int | None = None, heads: int | None = None,
        head_dim: int | None = None, flops_per_token: float | None = None, inputs: Sequence[Any] = (),
        inputs_ref: str | None = None, cache: bool = True) -> Report:
    """MFU and HFU from a measured throughput (the ``time`` section).

    FLOPs per token from exactly one of: a ``model`` (its traced training step), ``params`` with ``layers``,
    ``heads``, ``head_dim`` and ``seq`` (PaLM appendix B: 6N + 12·L·H·Q·T), or ``flops_per_token``.
    The throughput is ``tokens_per_s``, or ``step_s`` with ``batch`` and ``seq``.
    MFU = model FLOPs per token × tokens/s / (``devices`` × dense peak FLOP/s per device); HFU uses the
    hardware FLOPs (with recomputation) instead. All arguments after ``model`` are keyword-only.

    Args:
        model: a MODEL as for :func:`mlfootprint.count` (catalog name such as ``"gpt2"``, HF config path or hub
            id, ``"module:callable"``, or an ``nn.Module``, never modified). Its training step (``mode="train"``
            at ``batch`` (default 1), ``seq``, ``precision`` and ``recompute``) is traced for the FLOPs per
            token. None (the default): take the FLOPs from ``params`` or ``flops_per_token`` instead.
        tokens_per_s: measured throughput of the whole job in tokens/s (all devices together). Give this or
            ``step_s``, not both.
        step_s: measured seconds per optimizer step; needs ``batch`` and ``seq`` (tokens/s = batch × seq / step_s).
        batch: global batch in sequences per step (for ``step_s``, and the traced batch of ``model``).
        seq: sequence length in tokens (for ``step_s`` and the attention term of ``params``; with ``model``,
            default: the model's context length, at most 4096).
        hardware: a catalog device id (``"h100-sxm"``, ``"a100-80gb"``, ``"tpu-v4"``; see
            :func:`mlfootprint.hardware_list`) whose published dense peak is the denominator. Needed unless
            ``peak_flops`` is given.
        devices: number of devices the throughput was measured on (default 1).
        precision: which dense peak of ``hardware`` to use, as a Workload precision (default ``"bf16"``; e.g.
            ``"fp32"``, ``"fp16"``, ``"bf16-mixed"``, ``"fp8-mixed"``); also the traced precision of ``model``.
        peak_flops: dense peak FLOP/s of one device, overriding the catalog figure of ``hardware``.
        recompute: activation recomputation, ``"none"`` (default), ``"selective"`` or ``"full"``; changes HFU
            only (PaLM: full adds 2N + 4·L·H·Q·T per token, selective 4·L·H·Q·T). Ignored with
            ``flops_per_token`` (HFU equals MFU).
        params: parameter count N for the PaLM formula; needs ``layers``, ``heads``, ``head_dim`` and ``seq``.
        layers: transformer layers L (with ``params``).
        heads: attention heads H (with ``params``).
        head_dim: dimension Q of one attention head (with ``params``).
        flops_per_token: model FLOPs per token, given directly (forward + backward).
        inputs: input shapes (``"8x3x224x224"``) or example tensors, for a factory or module ``model``.
        inputs_ref: ``"file.py:callable"`` returning the inputs of ``model``.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report with a ``time`` section (and a ``model`` section when ``model`` is given):
        ``time.mfu`` and ``time.hfu`` (fractions), ``model_flops_per_token``, ``hardware_flops_per_token``,
        ``tokens_per_s``, ``devices``, ``hardware`` (the device id, or ``"given"`` with ``peak_flops``),
        ``peak_dtype``, ``peak_flop_per_s``, ``achieved_flop_per_s`` (the job),
        ``achieved_per_device_flop_per_s``, ``formula`` (where the FLOPs per token came from) and ``seq``.
        Non-positive numbers, a missing throughput or both throughputs, and no or several FLOP sources
        raise :class:`~mlfootprint.core.errors.UserError`.

    Example:
        >>> rep = mf.mfu(params=540.35e9, layers=118, heads=48, head_dim=256, seq=2048,
        ...              tokens_per_s=238.3e3, devices=6144, hardware="tpu-v4")
        >>> round(rep.sections["time"]["mfu"], 3)
        0.462
        >>> rep = mf.mfu("llama-2-7b", step_s=1.5, batch=64, seq=4096, devices=64, hardware="a100-80gb")  # ≈ 0.40
        >>> rep = mf.mfu(flops_per_token=6 * 7e9, tokens_per_s=3000, hardware="a100-80gb")   # 6N: 40.4% MFU
    """
    _check_inputs(tokens_per_s, step_s, batch, seq, devices, peak_flops, recompute, precision, params, layers,
                  heads, head_dim, flops_per_token)
    peak, peak_src, hw_id, dtype = _peak(hardware, precision, peak_flops)
    sources = [n for n, v in (("MODEL", model), ("--params", params), ("--flops-per-token", flops_per_token))
               if v is not None]
    if len(sources) != 1:
        raise UserError("give exactly one source of FLOPs per token: a MODEL, --params with --layers/--heads/--head-dim "
                        f"and --seq, or --flops-per-token (got {', '.join(sources) or 'none'})")
    if model is not None:
        per = _traced_per_token(model, batch, seq, precision, recompute, inputs, inputs_ref,
                                hw_id if hardware else None)
    elif params is not None:
        per = _palm_per_token(params, layers, heads, head_dim, seq, recompute)
    else:
        per = _PerToken(flops_per_token, None, "given FLOPs per token (--flops-per-token)", seq,
                        ["--recompute is ignored with --flops-per-token: HFU equals MFU"] if recompute != "none" else [])
    tps, thr_note = _throughput(tokens_per_s, step_s, batch, per.seq)
    u = mfu_from_throughput(per.model, tps, devices, peak, per.hardware)
    if u.mfu > 1.0:
        # more model FLOP/s than the devices' dense peak: no real run does that, so an input is off
        raise UserError(f"the throughput implies an MFU of {u.mfu:.1%}: {u.achieved_per_device_flop_per_s / 1e12:.4g} "
                        f"TFLOP/s of model FLOPs per device against a dense {dtype} peak of {peak / 1e12:.4g}; check "
                        "that --tokens-per-s (or --step-s with --batch and --seq) is the whole run's and --devices "
                        "counts all its devices")
    rep = base_report("mfu", None, None)
    rep.conventions = {}
    if per.spec is not None:
        rep.add(model_section(per.spec))
    rep.add(TimeSection(
        mfu=u.mfu, hfu=u.hfu, model_flops_per_token=u.model_flops_per_token,
        hardware_flops_per_token=u.hardware_flops_per_token, tokens_per_s=tps, devices=devices, hardware=hw_id,
        peak_dtype=dtype, peak_flop_per_s=peak, achieved_flop_per_s=u.achieved_flop_per_s,
        achieved_per_device_flop_per_s=u.achieved_per_device_flop_per_s, formula=per.formula, seq=per.seq or None),
        {"mfu": "modeled", "hfu": "modeled", "model_flops_per_token": "counted" if model is not None else "modeled",
         "peak_flop_per_s": "published" if peak_flops is None else "assumed"})
    rep.assume(f"MFU = model FLOPs per token × tokens/s / (devices × dense {dtype} peak); HFU adds recomputation "
               "(PaLM appendix B definitions)")
    rep.assume(f"throughput: {thr_note}")
    rep.assume(f"peak: {peak / 1e12:.4g} TFLOP/s per device ({peak_src})")
    for n in per.notes:
        rep.assume(n)
    return rep


def _check_inputs(tokens_per_s, step_s, batch, seq, devices, peak_flops, recompute, precision_name, params, layers,
                  heads, head_dim, flops_per_token) -> None:
    for name, v, integer in (("--params", params, False), ("--layers", layers, True), ("--heads", heads, True),
                             ("--head-dim", head_dim, True), ("--flops-per-token", flops_per_token, False),
                             ("--tokens-per-s", tokens_per_s, False), ("--step-s", step_s, False),
                             ("--batch", batch, True), ("--seq", seq, True), ("--devices", devices, True),
                             ("--peak-flops", peak_flops, False)):
        if integer:
            whole(name, v)
        else:
            number(name, v)
    _check_choice("recompute", recompute, RECOMPUTE)
    precision(precision_name)
    if tokens_per_s is not None and step_s is not None:
        raise UserError("give --tokens-per-s or --step-s (with --batch and --seq), not both")
    if tokens_per_s is None and step_s is None:
        raise UserError("mfu needs a measured throughput: --tokens-per-s X, or --step-s S with --batch B and --seq T")


def _peak(hardware: str | None, precision_name: str, peak_flops: float | None) -> tuple[float, str, str, str]:
    dtype = precision(precision_name).peak_dtype
    if peak_flops is not None:
        return peak_flops, "given (--peak-flops)", "given", dtype
    if not hardware:
        raise UserError("mfu needs --hardware ID (see: mlfootprint hardware list) or --peak-flops FLOP/S")
    dev = resolve_device(hardware)
    return dev.peak_for(dtype), dev.source_of(f"peak_flops.{dtype}"), dev.id, dtype


def _traced_per_token(model: Any, batch: int | None, seq: int | None, precision_name: str, recompute: str,
                      inputs: Sequence[Any], inputs_ref: str | None, hardware: str | None = None) -> _PerToken:
    # traced with the named device's kernel semantics (its attention kernels recompute what they recompute)
    given = {"batch": batch or 1, "mode": "train", "precision": precision_name, "recompute": recompute,
             **({"hardware": hardware} if hardware else {})}
    wl = Workload(**given, **({"seq": seq} if seq else {}))
    spec = resolve_model(model, inputs, inputs_ref)
    tr = traced_step(spec, wl, checkpoint_early_stop=False)
    fs = flop_summary(tr)
    seq = seq or (tr.tokens // wl.batch if tr.token_unit == "tokens" else None)
    formula = (f"traced training step of {spec.name} at seq {seq}: model FLOPs (forward + backward matrix work, "
               "attention as the full square) per token")
    return _PerToken(fs.model / tr.tokens, fs.hardware / tr.tokens, formula, seq, list(tr.assumptions), spec)


def _palm_per_token(params: float, layers: int | None, heads: int | None, head_dim: int | None, seq: int | None,
                    recompute: str) -> _PerToken:
    missing = [n for n, v in (("--layers", layers), ("--heads", heads), ("--head-dim", head_dim), ("--seq", seq))
               if v is None]
    if missing:
        raise UserError(f"--params needs {', '.join(missing)} for the attention term of 6N + 12·L·H·Q·T")
    per_token = palm_flops_per_token(params, layers, heads, head_dim, seq)
    attn = 12.0 * layers * heads * head_dim * seq
    formula = "6N + 12·L·H·Q·T per token (PaLM, Chowdhery et al. 2022, appendix B; attention as the full square)"
    if recompute == "full":
        return _PerToken(per_token, per_token + 2.0 * params + attn / 3.0, formula, seq,
                         ["HFU with full recomputation: one more forward pass, 2N + 4·L·H·Q·T per token"])
    if recompute == "selective":
        return _PerToken(per_token, per_token + attn / 3.0, formula, seq,
                         ["HFU with selective recomputation: the attention products of the forward again, "
                          "4·L·H·Q·T per token"])
    return _PerToken(per_token, None, formula, seq)


def _throughput(tokens_per_s: float | None, step_s: float | None, batch: int | None,
                seq: int | None) -> tuple[float, str]:
    if tokens_per_s is not None:
        return tokens_per_s, f"{tokens_per_s:.6g} tokens/s (given)"
    if not batch or not seq:
        raise UserError("--step-s needs --batch B and --seq T (tokens per step = B × T)")
    tps = batch * seq / step_s
    return tps, f"{batch} × {seq} tokens per step / {step_s:g} s = {tps:.6g} tokens/s"
