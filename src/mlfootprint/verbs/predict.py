"""``predict``: step time, tokens/s, MFU/HFU, time to train, device-hours, serving latency (+ memory, footprint)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.memory.model import device_bytes_for, memory_model
from ..analysis.predict.prediction import predict_step, resolve_device
from ..analysis.predict.efficiency import efficiency_for
from ..analysis.predict.roofline import peak_for_precision
from ..analysis.predict.shape import parallel_from
from ..core.errors import UserError
from ..core.units import parse_duration
from ..report.schema import Report
from ..trace.run import trace
from ..workload import Workload
from .common import add_count, base_report, resolve_model
from .parts import add_memory, add_run_footprint, add_time

# predict answers for a training step unless told otherwise (and then gives time to train).
DEFAULT_MODE = "train"


def predict(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
            inputs_ref: str | None = None, *, efficiency: Any = None, mfu: float | None = None,
            hfu: float | None = None, flops_per_device: float | None = None, deadline: str | float | None = None,
            deadline_mfu: float | None = None) -> Report:
    """Step time, tokens/s, MFU/HFU, time to train and device-hours of ``workload`` on ``workload.hardware``.

    The workload's mode defaults to ``train`` here. Memory and the footprint (energy, CO2e, water, cost) of
    the predicted run come with it.

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count`; ``workload.hardware`` is needed.
        efficiency: efficiency-factor overrides ("matmul=0.6,network=0.7" or a dict).
        mfu, hfu, flops_per_device: replace the roofline by a given utilization (what a paper reports).
        deadline: with ``workload.tokens``, a duration ("90d", or seconds): the devices needed to finish in it.
        deadline_mfu: the MFU assumed for ``deadline`` (default: the predicted one).

    Returns:
        A Report with ``params``, ``flops``, ``memory``, ``time`` and ``footprint`` sections.

    Example:
        >>> rep = mf.predict("gpt2", mf.Workload(batch=8, seq=1024, hardware="a100-80gb", tokens=1e9))
        >>> rep.sections["time"]["train_s"]
    """
    wl = (workload or Workload()).with_defaults(mode=DEFAULT_MODE)
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
    spec = resolve_model(model, inputs, inputs_ref)
    tr = trace(spec, wl, checkpoint_early_stop=False)
    rep = base_report("predict", spec, wl)
    params, _ = add_count(rep, tr, wl, ops=False, modules=False)
    add_model_memory(rep, spec, wl, tr)
    pred = predict_step(spec, wl, tr, wl.hardware, efficiency=efficiency, mfu=mfu, hfu=hfu,
                        flops_per_device=flops_per_device)
    time = add_time(rep, pred, spec, wl, tr, efficiency=efficiency, active_params=params.active or params.total,
                    deadline_s=deadline_s, deadline_mfu=deadline_mfu)
    add_run_footprint(rep, time, params.total)
    if "mode" not in wl.given:
        rep.assume(f"mode: {DEFAULT_MODE} (predict's default; pass --mode inference or generate for serving)")
    return rep


def add_model_memory(rep: Report, spec: Any, wl: Workload, tr: Any) -> None:
    """The memory section of the workload as given, from the trace already made."""
    mm = memory_model(spec, wl, tr)
    est = mm.per_device(mm.layout())
    device_bytes, prov, source = device_bytes_for(wl)
    est = est.with_device(device_bytes, prov or "assumed")
    add_memory(rep, est, wl, **({"device_source": source} if device_bytes is not None and source else {}))
