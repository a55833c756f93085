"""``analyze``: the efficiency card — everything computable for one workload from one trace."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.predict.efficiency import efficiency_for
from ..analysis.predict.prediction import predict_step, resolve_device
from ..report.schema import Report
from ..workload import Workload
from .common import add_count, base_report, resolve_model, reuses_traces
from .parts import add_memory, add_run_footprint, add_time, check_training_tokens, site_inputs
from .predict import withhold_time, memory_extras
from .runnable import DEFAULTS, default_precision, traced_run


@reuses_traces
def analyze(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
            inputs_ref: str | None = None, *, efficiency: Any = None, site: dict[str, Any] | None = None,
            even_if_oom: bool = False, cache: bool = True) -> Report:
    """The efficiency card of one workload: params, FLOPs, memory and fit, step time, MFU, energy, CO2e, cost.

    Without ``workload.hardware`` (or ``device_memory``) the card is for one assumed device (an A100-80GB,
    from ``verbs/data/defaults.toml``), marked as assumed. The defaults give a run someone would do (see
    :func:`mlfootprint.predict`): bf16 on a bf16 device, the planner's layout for ``devices``, the largest
    micro-batch that fits. A workload that does not fit gets no time or footprint unless ``even_if_oom``.

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count` (model None: gpt2).
        efficiency: efficiency-factor overrides of the step-time model, as for :func:`mlfootprint.predict`.
        site: where the run happens and what it costs, for the footprint: ``region``, ``intensity``
            (gCO2e/kWh), ``facility``, ``pue``, ``wue``, ``utilization``, ``water_intensity`` (L/kWh),
            ``price_per_hour``, ``price_per_kwh`` — as for :func:`mlfootprint.footprint`.
        even_if_oom: give time and footprint even when the workload does not fit in memory.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report with ``params``, ``flops``, ``memory``, ``time`` and ``footprint`` sections.

    Example:
        >>> rep = mf.analyze("llama-2-7b", mf.Workload(mode="train", seq=4096, hardware="h100-sxm"))
    """
    wl = workload or Workload()
    check_training_tokens(wl)
    assumed_device = wl.hardware is None and wl.device_memory is None
    if assumed_device:
        wl = wl.with_defaults(hardware=DEFAULTS.value("analyze", "hardware"))
    dev = resolve_device(wl.hardware) if wl.hardware else None
    if dev is not None:
        efficiency_for(dev, efficiency)  # a bad factor or site option fails before the trace
    site_inputs(site)
    wl, precision_note = default_precision(wl, dev)
    spec = resolve_model(model, inputs, inputs_ref)
    # traced as predict traces (a checkpointed block recomputes its whole forward, as Megatron's and reentrant
    # checkpointing do): the main job's time, MFU and recomputation are predict's
    tr, run = traced_run(spec, wl, dev, efficiency=efficiency, checkpoint_early_stop=False)
    rep = base_report("analyze", spec, run.workload)
    if assumed_device:
        rep.key_assumptions.append(f"no --hardware given: time, memory fit and footprint are for one {wl.hardware} "
                                   "(choose yours with --hardware ID; see 'mlfootprint hardware list')")
    for note in ([precision_note] if precision_note else []) + run.notes:
        rep.key_assumptions.append(note)
    params, _ = add_count(rep, tr, run.workload, spec=spec)
    add_memory(rep, run.estimate, run.workload, **memory_extras(run))
    for note in rep.key_assumptions:
        rep.assume(note)
    if dev is not None and run.fits is False and not even_if_oom:
        withhold_time(rep, run)
    elif dev is not None:
        pred = predict_step(spec, run.workload, run.step_trace or tr, dev, layout=run.layout, efficiency=efficiency)
        time = add_time(rep, pred, spec, run.workload, tr, efficiency=efficiency,
                        active_params=params.active or params.total)
        add_run_footprint(rep, time, params.total, site)
    return rep
