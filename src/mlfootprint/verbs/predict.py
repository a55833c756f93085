"""``predict``: step time, tokens/s, MFU/HFU, time to train, device-hours, serving latency (+ memory, footprint)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.predict.efficiency import efficiency_for
from ..analysis.predict.prediction import predict_step, resolve_device
from ..analysis.predict.roofline import peak_for_precision
from ..analysis.predict.shape import parallel_from
from ..core.errors import UserError
from ..core.units import parse_duration
from ..report.schema import Report
from ..workload import Workload
from .common import add_count, base_report, resolve_model, reuses_traces
from .parts import add_memory, add_run_footprint, add_time, check_training_tokens, site_inputs
from .runnable import DEFAULTS, Run, default_precision, planner_decides, traced_run

# predict answers for a training step unless told otherwise (and then gives time to train).
DEFAULT_MODE = "train"


@reuses_traces
def predict(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
            inputs_ref: str | None = None, *, efficiency: Any = None, mfu: float | None = None,
            hfu: float | None = None, flops_per_device: float | None = None, deadline: str | float | None = None,
            deadline_mfu: float | None = None, site: dict[str, Any] | None = None,
            even_if_oom: bool = False, cache: bool = True) -> Report:
    """Step time, tokens/s, MFU/HFU, time to train and device-hours of ``workload`` on ``workload.hardware``.

    Without ``workload.hardware`` it predicts for the assumed device of :func:`mlfootprint.analyze` (an
    A100-80GB), marked as assumed. The workload's mode defaults to ``train`` here, its precision to bf16-mixed (training) or bf16 (inference)
    on a device with bf16; ``devices`` without a layout takes the planner's best layout, and the micro-batch is
    the largest that fits. Memory comes with it, and the footprint (energy, CO2e, water, cost) of the run.
    A workload that does not fit gets no time or footprint (``even_if_oom=True`` gives them anyway), and
    ``memory.suggestions`` lists the smallest changes that fit.

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count`.
        efficiency: efficiency-factor overrides ("matmul=0.6,network=0.7" or a dict).
        mfu, hfu, flops_per_device: replace the roofline by a given utilization (what a paper reports).
        deadline: with ``workload.tokens``, a duration ("90d", or seconds): the devices needed to finish in it.
        deadline_mfu: the MFU assumed for ``deadline`` (default: the predicted one).
        site: where the run happens and what it costs, for the footprint: ``region``, ``intensity``
            (gCO2e/kWh), ``facility``, ``pue``, ``wue``, ``utilization``, ``water_intensity`` (L/kWh),
            ``price_per_hour``, ``price_per_kwh`` — as for :func:`mlfootprint.footprint`.
        even_if_oom: give time and footprint even when the workload does not fit in memory.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report with ``params``, ``flops``, ``memory``, ``time`` and ``footprint`` sections.

    Example:
        >>> rep = mf.predict("gpt2", mf.Workload(batch=8, seq=1024, hardware="a100-80gb", tokens=1e9))
        >>> rep.sections["time"]["train_s"]
    """
    wl = (workload or Workload()).with_defaults(mode=DEFAULT_MODE)
    assumed_device = not wl.hardware
    if assumed_device:
        wl = wl.with_defaults(hardware=DEFAULTS.value("analyze", "hardware"))
    check_training_tokens(wl)
    deadline_s = parse_duration(deadline) if deadline is not None else None
    if deadline_s and not wl.tokens:
        raise UserError("--deadline needs --tokens N (how many tokens to train on)")
    if deadline_mfu is not None and not (0 < deadline_mfu <= 1):
        raise UserError(f"--deadline-mfu is a fraction between 0 and 1, got {deadline_mfu:g}")
    # The device, the precision's peak, the overrides and the layout are checked before the (slower) trace.
    dev = resolve_device(wl.hardware)
    wl, precision_note = default_precision(wl, dev)
    peak_for_precision(dev, wl.precision)
    efficiency_for(dev, efficiency)
    site_inputs(site)
    if not planner_decides(wl):  # a layout the planner chooses is checked by the planner
        parallel_from(wl)
    spec = resolve_model(model, inputs, inputs_ref)
    tr, run = traced_run(spec, wl, dev, efficiency=efficiency, checkpoint_early_stop=False)
    rep = base_report("predict", spec, run.workload)
    if assumed_device:
        rep.key_assumptions.append(f"no --hardware given: the prediction is for {wl.hardware} (choose yours with "
                                   "--hardware ID; see 'mlfootprint hardware list')")
    for note in ([precision_note] if precision_note else []) + run.notes:
        rep.key_assumptions.append(note)
    params, _ = add_count(rep, tr, run.workload, ops=False, modules=False, spec=spec)
    add_memory(rep, run.estimate, run.workload, **memory_extras(run))
    for note in rep.key_assumptions:
        rep.assume(note)
    if run.fits is False and not even_if_oom:
        withhold_time(rep, run)
    else:
        pred = predict_step(spec, run.workload, run.step_trace or tr, dev, efficiency=efficiency, mfu=mfu, hfu=hfu,
                            flops_per_device=flops_per_device, layout=run.layout)
        time = add_time(rep, pred, spec, run.workload, tr, efficiency=efficiency,
                        active_params=params.active or params.total, deadline_s=deadline_s, deadline_mfu=deadline_mfu)
        add_run_footprint(rep, time, params.total, site)
    if "mode" not in wl.given:
        rep.assume(f"mode: {DEFAULT_MODE} (predict's default; pass --mode inference or generate for serving)")
    return rep


def memory_extras(run: Run) -> dict[str, Any]:
    """What the memory section adds to the estimate: where the device size came from, and the advice."""
    extra: dict[str, Any] = {}
    if run.device_bytes is not None and run.device_source:
        extra["device_source"] = run.device_source
    if run.suggestions:
        extra["suggestions"] = run.suggestions
    return extra


def withhold_time(rep: Report, run: Run) -> None:
    """No time, energy, CO2e or cost for a run that cannot happen; say so first, with the changes that fit."""
    peak, cap = run.estimate.peak_bytes, run.device_bytes or 0
    changes = "; ".join(s["change"] for s in run.suggestions) or "none of the single changes tried fits"
    rep.assumptions.insert(0, f"does not fit: {peak / 2**30:.1f} GiB per device of {cap / 2**30:.1f} GiB; no time, energy, "
                              f"CO2e or cost is given for a run that cannot happen (--even-if-oom gives them). Changes "
                              f"that fit: {changes}")
