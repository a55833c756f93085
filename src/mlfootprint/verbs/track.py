"""``track``: measure your own training loop; and the report of a tracked run (one rank or many).

    with mf.track(model=net, hardware="this", report="run.json") as t:
        for x in batches:
            ...
            t.step(tokens=x.numel())

What is measured and how is :mod:`mlfootprint.measure.track`; how ranks are gathered is
:mod:`mlfootprint.measure.distributed`. The report is built here, from the rank records.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..measure.distributed import finite_numbers, gather_rank_records, global_figures, rank_summary, step_rows
from ..report.schema import Report
from ..report.sections import MeasuredSection, ModelSection, TrackedWorkloadSection

if TYPE_CHECKING:
    from ..measure.track import Tracker


def track(model: Any = None, **kwargs: Any) -> Tracker:
    """Track your own loop: a context manager (``with mf.track(...) as t``) and a decorator (``@mf.track(...)``).

    Call ``t.step(tokens=...)`` once per micro-batch (forward + backward); with ``grad_accum=N`` every N-th call
    closes an optimizer step (``t.step(optimizer_step=True)`` closes one at any call). Tracking never stops the
    loop: a meter or a trace that fails makes its figure unavailable, with the reason; a ``t.step()`` with bad
    arguments (tokens that are not a number >= 0) is warned about once and its optimizer step left out.
    Trackers may be nested: each leaves the others' own work (trace, report) out of its step times. Bad arguments raise
    :class:`~mlfootprint.core.errors.UserError` when the tracker is made. Under ``torchrun`` every rank tracks
    its steps and rank 0 writes one report. Every argument after ``model`` is keyword-only.

    Args:
        model: the ``nn.Module`` being trained (for its FLOPs, traced lazily on fake copies; never modified).
            None: nothing is traced, and MFU needs ``flops_per_token``.
        hardware: a catalog device id (``"a100-80gb"``, ``"h100-sxm"``, ``"this"``) for the peak FLOP/s
            (default: the calibrated profile, or the matching GPU).
        report: a path for the JSON report, written when tracking stops (default None: kept in ``t.report`` only).
        precision: the precision of the loop, for the peak and the trace (default: detected from the weights and
            autocast), e.g. ``"bf16-mixed"``.
        tokens_per_step: tokens (or samples) per optimizer step on this rank, when ``t.step()`` gets no
            ``tokens``.
        grad_accum: micro-batches per optimizer step (default 1).
        flops_per_token: model FLOPs per token (forward + backward), instead of tracing ``model``;
            hardware_flops_per_token: the same with recomputation, for HFU (default: ``flops_per_token``).
        energy: True (default) reads the automatic energy meter (NVML, RAPL, or the TDP of ``hardware``,
            modeled), False measures none, or pass an ``EnergyMeter`` of your own.
        warmup_steps: optimizer steps left out of the rates (default 1).
        mode: ``"train"`` (default) or ``"inference"``; optimizer: the optimizer in use (a ``torch.optim``
            optimizer or a Workload optimizer name), for the trace's optimizer FLOPs (default: AdamW).
        name: the model's name in the report (default: the class name of ``model``).
        device: the torch device of the loop (default: the device of the model's parameters, else the CPU).
        sync: synchronize CUDA at each step boundary for exact per-step times (default False).
        trace: trace ``model`` for the FLOPs (default True; off when ``flops_per_token`` is given).
        sample_interval_s, flush_interval_s, gather_timeout_s: seconds between memory/energy samples (1.0),
            between writes of the per-rank files (10.0), and rank 0's wait for the other ranks (60.0).
        meter_timeout_s: the longest wait for one call of the energy meter (2.0); a meter that blocks longer is
            abandoned (one warning) and energy is reported unavailable with the reason.
        rank_files: write per-rank files next to the report (default: with several ranks and a ``report``).
        log_every, log: log a progress line every this many steps (default None: never), through ``log``
            (a callable taking a string; default: the ``mlfootprint.track`` logger).
        clock: the timer, a callable returning seconds (default :func:`time.perf_counter`); for tests.

    Returns:
        The Tracker: call ``t.step(tokens=...)`` once per micro-batch; ``t.report`` holds the Report once stopped
        (``t.save(path)`` writes it elsewhere). That Report has ``model``, ``workload`` (mode, grad_accum,
        precision, hardware, world_size) and ``measured`` sections; ``measured`` holds ``status``, ``steps``,
        ``tokens``, ``step_s`` (median step time), ``step_p90_s``, ``tokens_per_s``, ``mfu``, ``hfu``,
        ``model_flops_per_token``, ``peak_flop_per_s``, ``peak_bytes``, ``energy_j``, ``energy_per_token_j``,
        ``series`` (one row per step), ``by_rank`` with several ranks, and ``unavailable`` (figure → why not).

    Example:
        >>> with mf.track(model=net, hardware="a100-80gb", grad_accum=4, report="run.json") as t:
        ...     for x, y in loader:
        ...         loss_fn(net(x), y).backward()
        ...         t.step(tokens=x.numel())          # once per micro-batch
        ...         if t.micro_step == 0:             # the 4th call closed an optimizer step
        ...             opt.step(); opt.zero_grad()
        >>> t.report.sections["measured"]["mfu"]
    """
    from ..measure.track import Tracker  # torch: only when tracking (`report` merges rank files without it)

    return Tracker(model, report_builder=track_report, **kwargs)


def _current_tracker() -> Tracker | None:
    """The innermost tracker running in this process (for code decorated with ``@track(...)``)."""
    from ..measure.track import current_tracker

    return current_tracker()


track.current = _current_tracker  # type: ignore[attr-defined]


def merge_rank_files(paths: Iterable[str | os.PathLike[str]], warmup: int | None = None) -> Report:
    """One report from the per-rank files of a tracked job (what rank 0 would have written; after any failure)."""
    records, warmup, meta = gather_rank_records(paths, warmup)
    return track_report(records, warmup=warmup, meta=meta)


def track_report(records: Sequence[dict[str, Any]], *, warmup: int = 1, meta: dict[str, Any] | None = None) -> Report:
    """The ``track`` report from one or more rank records."""
    meta = dict(meta or {})
    records = sorted(records, key=lambda r: int(r.get("rank", 0)))
    first = next((r for r in records if r.get("series")), records[0] if records else {})
    rep = Report(verb="track")
    model = meta.get("model") or first.get("model") or {}
    if model:
        rep.add(ModelSection(**model))
    workload = dict(meta.get("workload") or first.get("workload") or {})
    workload["world_size"] = max([int(r.get("world_size") or 1) for r in records] + [len(records)])
    rep.add(TrackedWorkloadSection(**workload))
    m, unavailable = _figures(records, first, warmup)
    _energy_figures(records, m, unavailable)
    _per_rank(records, m, warmup)
    if unavailable:
        m["unavailable"] = unavailable
    m, not_finite = finite_numbers(m)  # strict JSON: a NaN or infinite figure is written as null, with a note
    for where in not_finite:
        rep.assume(f"measured.{where} was not a finite number; written as null")
    data = rep.add(MeasuredSection(**m))
    _mark(rep, data, records)
    _assumptions(rep, records, meta, warmup)
    rep.conventions = {
        "MFU": "model FLOPs (forward + backward, counted from the trace, or given) per second over the device's "
               "dense peak FLOP/s for the precision in use; HFU adds recomputation",
        "step": "one optimizer step: with gradient accumulation, all its micro-batches",
        "units": "JSON in base units with the unit in the key; GB = 1e9 bytes, GiB = 2^30 bytes",
    }
    return rep


def _figures(records: Sequence[dict[str, Any]], first: dict[str, Any], warmup: int
             ) -> tuple[dict[str, Any], dict[str, str]]:
    """Step times, throughput, MFU, the FLOPs and peak used, memory: of the one rank, or of the job."""
    m: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    if len(records) == 1:
        rec = records[0]
        s = rank_summary(rec, warmup)
        m["status"] = s.pop("status")
        m["device"] = rec.get("device")
        s.pop("host", None)
        m.update({k: v for k, v in s.items() if k not in ("model_flops", "hardware_flops")})
    else:
        m["status"] = "complete" if all(r.get("status") == "complete" for r in records) else "incomplete"
        m["device"] = first.get("device")
        m.update(global_figures(records, warmup))
    f = first.get("flops") or {}
    for key in ("model_flops_per_token", "hardware_flops_per_token", "model_flops_per_micro_batch",
                "hardware_flops_per_micro_batch", "forwards_in_first_step", "flops_source", "trace_s"):
        if f.get(key) is not None:
            m[key] = f[key]
    if "mfu" not in m:
        unavailable["mfu"] = f.get("why") or (first.get("peak") or {}).get("why") or "FLOPs or peak FLOP/s unknown"
    if "tokens_per_s" not in m:
        unavailable["tokens_per_s"] = "tokens were not given for every step (t.step(tokens=...) or tokens_per_step=)"
    peak = first.get("peak") or {}
    for key in ("peak_flop_per_s", "peak_dtype", "hardware"):
        if peak.get(key) is not None:
            m[key] = peak[key]
    mem = first.get("memory") or {}
    if mem.get("method"):
        m["memory_method"] = mem["method"]
    if "peak_bytes" not in m:
        unavailable["peak_bytes"] = mem.get("why") or "not measured"
    return m, unavailable


def _energy_figures(records: Sequence[dict[str, Any]], m: dict[str, Any], unavailable: dict[str, str]) -> None:
    energies = [(r.get("energy") or {}) for r in records]
    provs = sorted({e.get("provenance") for e in energies if e.get("provenance")})
    if provs:
        m["energy_provenance"] = "/".join(provs)
    methods = sorted({e.get("method") for e in energies if e.get("method")})
    if methods:
        m["energy_method"] = "; ".join(methods)
    if energies and all(e.get("energy_j") is not None for e in energies):
        total = sum(float(e["energy_j"]) for e in energies)
        m["energy_j"] = total
        steps = m.get("steps") or 0
        if steps:
            m["energy_per_step_j"] = total / steps
        if m.get("tokens"):
            m["energy_per_token_j"] = total / float(m["tokens"])
        elapsed = max((float(e.get("elapsed_s") or 0) for e in energies), default=0.0)
        if elapsed > 0 and len(energies) == 1:
            m["mean_power_w"] = total / elapsed
    else:
        reasons = [e.get("why") or ("the meter failed during the run" if e.get("provenance") else "not measured")
                   for e in energies if e.get("energy_j") is None]
        unavailable["energy_j"] = reasons[0] if reasons else "not measured"
        partial = [e.get("partial_energy_j") for e in energies if e.get("partial_energy_j") is not None]
        if partial:
            m["partial_energy_j"] = sum(float(p) for p in partial)
    notes: list[str] = []
    for e in energies:
        for n in e.get("notes") or []:
            if n not in notes:
                notes.append(n)
    if notes:
        m["energy_notes"] = notes


def _per_rank(records: Sequence[dict[str, Any]], m: dict[str, Any], warmup: int) -> None:
    if len(records) > 1:
        cols = ("status", "host", "steps", "tokens", "step_s", "step_p90_s", "tokens_per_s", "mfu",
                "peak_bytes", "energy_j")
        m["by_rank"] = {str(rec.get("rank")): {c: s.get(c) for c in cols}
                        for rec, s in ((rec, rank_summary(rec, warmup)) for rec in records)}
        m["rank_series"] = {str(r.get("rank")): step_rows(r) for r in records}
        return
    rec = records[0]
    m["series"] = step_rows(rec)
    if (rec.get("memory") or {}).get("samples"):
        m["memory_samples"] = rec["memory"]["samples"]
    if (rec.get("energy") or {}).get("samples"):
        m["energy_samples"] = rec["energy"]["samples"]


def _mark(rep: Report, m: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    for key in ("steps", "micro_steps", "tokens", "step_s", "step_mean_s", "step_p90_s", "step_p99_s", "step_min_s",
                "step_max_s", "counted_elapsed_s", "tokens_per_s", "mfu", "hfu", "peak_bytes", "straggler_ratio"):
        if key in m:
            rep.mark(f"measured.{key}", "measured")
    src = m.get("flops_source", "")
    for key in ("model_flops_per_token", "hardware_flops_per_token", "model_flops_per_micro_batch",
                "hardware_flops_per_micro_batch"):
        if key in m:
            rep.mark(f"measured.{key}", "counted" if src.startswith("trace") else "assumed")
    peak = (records[0].get("peak") or {}) if records else {}
    if "peak_flop_per_s" in m:
        rep.mark("measured.peak_flop_per_s", peak.get("provenance") or "published")
    kind = "measured" if m.get("energy_provenance", "") == "measured" else "modeled"
    for key in ("energy_j", "energy_per_step_j", "energy_per_token_j", "mean_power_w", "partial_energy_j"):
        if key in m:
            rep.mark(f"measured.{key}", kind)


def _assumptions(rep: Report, records: Sequence[dict[str, Any]], meta: dict[str, Any], warmup: int) -> None:
    world = len(records)
    notes: list[str] = []
    for rec in records:
        for n in rec.get("notes") or []:
            text = n if world == 1 else f"rank {rec.get('rank')}: {n}"
            if text not in notes:
                notes.append(text)
    for n in meta.get("assumptions", []) + notes:
        rep.assume(n)
    rep.assume(f"a step is one optimizer step; rates exclude the first {warmup} step(s) when there are more "
               "(warm-up); step_s is the median step time")
    if world > 1:
        rep.assume("global figures: the slowest rank sets the pace of each step (synchronous data parallelism); "
                   "tokens are summed over ranks")
