"""``bench``: real runs on this machine, measured next to the prediction for the same workload."""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..analysis.count.flops import flop_summary
from ..core.errors import UserError
from ..measure import stats
from ..measure.bench import (DEFAULT_MIN_REPEATS, DEFAULT_THRESHOLD, DEFAULT_WARMUP, ERROR_CONVENTION, BenchRun,
                             device_label, run_bench)
from ..measure.reference import peak_flops, predictions
from ..models.hf import TEXT_TASKS, default_seq
from ..report.schema import Report
from ..report.sections import MeasuredSection, VersusPredicted
from ..trace.cache import traced_step
from ..workload import Workload
from .common import add_count, base_report, resolve_model, reuses_traces

_MEASURED = ("step_s", "tokens_per_s", "samples_per_s", "peak_bytes", "reserved_bytes", "mfu", "hfu",
             "achieved_flops_per_s")


@reuses_traces
def bench(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (), inputs_ref: str | None = None,
          *, repeats: int | None = None, warmup: int = DEFAULT_WARMUP, max_time_s: float | None = None,
          threshold: float = DEFAULT_THRESHOLD, min_repeats: int = DEFAULT_MIN_REPEATS, device: str | None = "auto",
          energy: bool = True, progress: bool | None = None, seed: int = 0,
          clock: Callable[[], float] = time.perf_counter, meter_factory: Callable[[], Any] | None = None,
          cache: bool = True) -> Report:
    """Run ``workload`` for real on this machine (CPU, or CUDA when present) and report what was measured —
    latency distribution, throughput, MFU, peak memory, energy — next to the prediction.

    The model is built and run on one device (a catalog or Hugging Face model gets deterministic random weights
    from ``seed``; a module keeps its own): ``warmup`` untimed steps, then timed steps until the median is
    stable. A training step (``workload.mode="train"``) is forward, backward and the optimizer step; a batch that
    runs out of memory is halved until one runs, and the report says so. Multi-device layouts (dp/tp/pp/ep,
    ``devices`` > 1), ZeRO, offloading and quantized weights are refused with a
    :class:`~mlfootprint.core.errors.UserError`.

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count`; an ``nn.Module`` runs on a copy
            (the caller's model is not modified) with the caller's own input tensors. Model None: gpt2;
            workload None: ``Workload()`` (inference, batch 1). ``workload.hardware`` (a catalog id, or
            ``"this"``) names the device whose peak FLOP/s gives MFU and the prediction; default: the calibrated
            profile ``this`` when it matches the device kind, else (on CUDA) the catalog GPU whose name matches.
        repeats: timed steps (default: until the median's 95% confidence interval is within ``threshold``,
            at least ``min_repeats`` and at most 1000 steps).
        warmup: untimed steps first (default 2; at least 1 in ``mode="train"``, where the first step creates the
            optimizer state); max_time_s: stop repeating after this many seconds (default: 30 s when ``repeats``
            is not given, no limit when it is).
        threshold: the relative half-width of the median's 95% confidence interval at which timing stops, a
            fraction between 0 and 1 (default 0.05, ±5%).
        min_repeats: timed steps before the ``threshold`` test may stop the timing (default 5).
        device: "auto" (default: the current CUDA device when present, else the CPU), "cpu", "cuda" or "cuda:N";
            None means "auto".
        energy: read energy meters (default True: NVML on CUDA, RAPL on the CPU; without one, the TDP of the
            catalog device above × time, marked modeled); False: no energy figures.
        progress: show a progress bar on stderr (default None: only when stderr is a terminal).
        seed: seed of ``torch.manual_seed`` and of the weight initialization (default 0).
        clock: the timer, a callable returning seconds (default :func:`time.perf_counter`); for tests.
        meter_factory: a callable returning the energy meter to use instead of the automatic one (default None);
            for tests and custom meters.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report with ``model``, ``workload``, ``params``, ``flops`` (when the model can be traced) and
        ``measured`` sections. ``measured`` holds ``step_s`` (the median latency), ``latency_median_s``,
        ``latency_p90_s``, ``latency_p99_s`` and the other latency statistics, ``tokens_per_s`` (or
        ``samples_per_s``), ``runs``, ``stopped_because``, ``mfu``/``hfu`` (with ``peak_flop_per_s``),
        ``peak_bytes``, ``energy_j`` and ``mean_power_w`` when measured, ``unavailable`` (figure → why not),
        ``series`` (every timed step) and ``vs_predicted``: for ``step_s``, the throughput, ``mfu`` and
        ``peak_bytes``, the ``measured`` and ``predicted`` values and ``error_fraction`` =
        (predicted − measured) / measured.

    Example:
        >>> rep = mf.bench("gpt2", mf.Workload(mode="train", batch=4, seq=256), repeats=10)
        >>> m = rep.sections["measured"]
        >>> m["step_s"], m["tokens_per_s"], m["vs_predicted"]["step_s"]["error_fraction"]
        >>> net = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 512))
        >>> rep = mf.bench(net, mf.Workload(mode="train"), inputs=[torch.randn(64, 512)], device="cpu")
    """
    wl = workload or Workload()
    spec = resolve_model(model, inputs, inputs_ref)
    given = [t for t in inputs if isinstance(t, torch.Tensor)]
    if isinstance(model, torch.nn.Module) and given:  # run on the caller's own values
        spec = dataclasses.replace(spec, inputs_factory=lambda: tuple(t.clone() for t in given))
    run = run_bench(spec, wl, repeats=repeats, warmup=warmup, max_time_s=max_time_s, threshold=threshold,
                    min_repeats=min_repeats, device=device, energy=energy, progress=progress, seed=seed, clock=clock,
                    meter_factory=meter_factory)
    rep = base_report("bench", spec, run.workload)
    rep.conventions["error_fraction"] = ERROR_CONVENTION
    for note in run.hardware_notes:
        rep.assume(note)
    # The trace of the workload that ran: FLOPs for MFU, and the prediction's input.
    tr, trace_why = None, ""
    try:
        tr = traced_step(spec, run.workload)
        add_count(rep, tr, run.workload, ops=False)
    except UserError as exc:
        trace_why = f"the model could not be traced: {exc}"
        rep.assume(f"no FLOP count: {trace_why}")
    section, unavailable = _timing(spec, run)
    _utilization(rep, section, unavailable, run, tr, trace_why)
    _memory_and_energy(section, unavailable, run)
    section.vs_predicted = _versus_predicted(section, unavailable, spec, run, tr, trace_why)
    _out_of_memory(rep, section, run)
    section.unavailable = unavailable or None
    section.series = [{"run": i + 1, "latency_s": t} for i, t in enumerate(run.timings.times)]
    data = rep.add(section)
    _mark(rep, data, run)
    for note in run.timings.notes:
        rep.assume(note)
    rep.assume("bench throughput = work per step / median step latency; percentiles interpolate linearly "
               "between order statistics")
    if run.device.type == "cpu":
        rep.assume(f"CPU run with {torch.get_num_threads()} PyTorch threads (torch.get_num_threads())")
    return rep


def _unit_key(run: BenchRun) -> str:
    return "tokens" if "token" in run.timings.token_unit else "samples"


def _timing(spec: Any, run: BenchRun) -> tuple[MeasuredSection, dict[str, str]]:
    tm, wl = run.timings, run.workload
    section = MeasuredSection(device=device_label(run.device), mode=wl.mode, batch=tm.batch)
    if spec.source != "factory" and spec.task in TEXT_TASKS:
        section.seq = wl.seq or default_seq(spec)
    section.token_unit = tm.token_unit
    unit_key = _unit_key(run)
    setattr(section, f"{unit_key}_per_step", tm.tokens)
    section.warmup_runs, section.runs, section.stopped_because = tm.warmup, len(tm.times), tm.stopped
    for key, value in stats.summarize(tm.times, "latency").items():
        setattr(section, key, value)
    median = statistics.median(tm.times)
    section.step_s = median
    setattr(section, f"{unit_key}_per_s", tm.tokens / median if median > 0 else None)
    if unit_key == "tokens" and median > 0:
        section.samples_per_s = tm.samples / median
    return section, {}


def _utilization(rep: Report, section: MeasuredSection, unavailable: dict[str, str], run: BenchRun, tr: Any,
                 trace_why: str) -> None:
    """MFU / HFU: counted FLOPs of the step over (median time × this device's peak)."""
    tm, median = run.timings, section.step_s
    if tr is None:
        unavailable["mfu"] = trace_why or "no trace"
        return
    if run.workload.mode == "generate":
        unavailable["mfu"] = ("generate: MFU is not computed for decoding (the trace covers the prompt's forward "
                              "pass, not the token-by-token decode)")
        return
    fs = flop_summary(tr)
    # The trace is one pass over the workload's batch; a step may be grad-accum micro-batches that add up
    # to a little less (batch not divisible): scale by the work actually done (FLOPs are linear in it).
    scale = tm.tokens / tr.tokens if tr.tokens else 1.0
    model_flops, hw_flops = (fs.model, fs.hardware) if scale == 1.0 else (fs.model * scale, fs.hardware * scale)
    section.model_flops_per_step, section.hardware_flops_per_step = model_flops, hw_flops
    section.achieved_flops_per_s = model_flops / median if median > 0 else None
    peak, dtype, notes = peak_flops(run.hardware, run.workload.precision, run.device)
    for n in notes:
        rep.assume(n)
    if peak:
        section.peak_flop_per_s, section.peak_dtype, section.peak_from = peak, dtype, run.hardware_why
        section.mfu, section.hfu = model_flops / (median * peak), hw_flops / (median * peak)
    else:
        unavailable["mfu"] = run.hardware_why if run.hardware is None else dtype


def _memory_and_energy(section: MeasuredSection, unavailable: dict[str, str], run: BenchRun) -> None:
    tm = run.timings
    if tm.peak_memory_bytes is not None:
        section.peak_bytes, section.memory_method = tm.peak_memory_bytes, tm.memory_method
    if tm.reserved_memory_bytes is not None:
        section.reserved_bytes = tm.reserved_memory_bytes
    r = tm.energy
    if r is None:
        unavailable["energy_j"] = tm.energy_why or "energy not measured (--no-energy)"
        return
    section.energy_provenance, section.energy_method = r.provenance, r.method
    if r.energy_j is not None:
        section.energy_j = r.energy_j
        section.energy_per_step_j = r.energy_j / len(tm.times)
        if r.elapsed_s > 0:
            section.mean_power_w = r.energy_j / r.elapsed_s
    else:
        unavailable["energy_j"] = "the energy meter failed during the run (see energy_notes)"
        if r.partial_energy_j is not None:
            section.partial_energy_j = r.partial_energy_j
    section.energy_notes = list(r.notes)


def _versus_predicted(section: MeasuredSection, unavailable: dict[str, str], spec: Any, run: BenchRun, tr: Any,
                      trace_why: str) -> dict[str, VersusPredicted]:
    """Each headline figure measured, next to the prediction for the same workload on the same device."""
    if tr is not None:
        preds = predictions(spec, run.workload, tr, run.hardware, run.hardware_why)
    else:
        preds = {k: (None, f"not available ({trace_why})") for k in
                 ("step_s", "tokens_per_s", "samples_per_s", "mfu", "peak_bytes")}
    unit_key = _unit_key(run)
    throughput_key = f"{unit_key}_per_s"
    rows: dict[str, VersusPredicted] = {}
    for fig in ("step_s", throughput_key, "mfu", "peak_bytes"):
        measured = getattr(section, fig)
        predicted, by = preds.get(fig, (None, "not available"))
        if fig == throughput_key and predicted is None and unit_key == "samples":
            predicted, by = preds.get("tokens_per_s", (predicted, by))  # the trace's tokens are samples here
        if measured is None:
            why = unavailable.get(fig, "not measured")
            rows[fig] = VersusPredicted(None, predicted, None, by, f"not measured ({why})")
            continue
        err = (predicted - measured) / measured if (predicted is not None and measured) else None
        rows[fig] = VersusPredicted(measured, predicted, err, by)
    return rows


def _out_of_memory(rep: Report, section: MeasuredSection, run: BenchRun) -> None:
    if not run.failures:
        return
    section.oom = {"requested_batch": run.requested_batch,
                   "failed_batches": ", ".join(str(b) for b, _ in run.failures),
                   "largest_batch_that_ran": run.timings.batch, "error": run.failures[-1][1]}
    rep.assume(f"batch {run.requested_batch} ran out of memory ({run.failures[0][1]}); batches were halved until one "
               f"ran: batch {run.timings.batch} was measured (the largest that ran among those tried)")


def _mark(rep: Report, m: dict[str, Any], run: BenchRun) -> None:
    for key in m:
        if key.startswith("latency_") or key in _MEASURED:
            rep.mark(f"measured.{key}", "measured")
    for key in ("model_flops_per_step", "hardware_flops_per_step"):
        if key in m:
            rep.mark(f"measured.{key}", "counted")
    if "peak_flop_per_s" in m:
        rep.mark("measured.peak_flop_per_s", "measured" if m.get("peak_from", "").startswith("calibrated") else "published")
    if run.timings.energy is not None:
        for key in ("energy_j", "energy_per_step_j", "mean_power_w", "partial_energy_j"):
            if key in m:
                rep.mark(f"measured.{key}", run.timings.energy.provenance)
    for fig, row in (m.get("vs_predicted") or {}).items():
        if row.get("measured") is not None:
            rep.mark(f"measured.vs_predicted.{fig}.measured", "measured")
        if row.get("predicted") is not None:
            rep.mark(f"measured.vs_predicted.{fig}.predicted", "modeled")
