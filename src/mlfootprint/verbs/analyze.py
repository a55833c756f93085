"""``analyze``: the efficiency card — everything computable for one workload from one trace."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.predict.prediction import predict_step
from ..core.datafiles import SourcedConstants
from ..report.schema import Report
from ..trace.run import trace
from ..workload import Workload
from .common import add_count, base_report, resolve_model
from .parts import add_run_footprint, add_time
from .predict import add_model_memory

DEFAULTS = SourcedConstants("verbs", "defaults.toml", "defaults")


def analyze(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
            inputs_ref: str | None = None) -> Report:
    """The efficiency card of one workload: params, FLOPs, memory and fit, step time, MFU, energy, CO2e, cost.

    Without ``workload.hardware`` (or ``device_memory``) the card is for one assumed device (an A100-80GB,
    from ``verbs/data/defaults.toml``), marked as assumed.

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count` (model None: gpt2).

    Returns:
        A Report with ``params``, ``flops``, ``memory``, ``time`` and ``footprint`` sections.

    Example:
        >>> rep = mf.analyze("llama-2-7b", mf.Workload(mode="train", seq=4096, hardware="h100-sxm"))
    """
    wl = workload or Workload()
    assumed_device = wl.hardware is None and wl.device_memory is None
    if assumed_device:
        wl = wl.with_defaults(hardware=DEFAULTS.value("analyze", "hardware"))
    spec = resolve_model(model, inputs, inputs_ref)
    tr = trace(spec, wl)
    rep = base_report("analyze", spec, wl)
    params, _ = add_count(rep, tr, wl)
    add_model_memory(rep, spec, wl, tr)
    if wl.hardware:
        pred = predict_step(spec, wl, tr, wl.hardware)
        time = add_time(rep, pred, spec, wl, tr, active_params=params.active or params.total)
        add_run_footprint(rep, time, params.total)
    if assumed_device:
        rep.assume(f"no --hardware given: time, memory fit and footprint are for one {wl.hardware} "
                   "(choose yours with --hardware ID; see 'mlfootprint hardware list')")
    return rep
