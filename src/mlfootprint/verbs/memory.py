"""``memory``: per-device memory by component, whether it fits, and the largest batch that fits."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..analysis.count.params import parameter_stats
from ..analysis.memory.model import max_batch
from ..analysis.predict.roofline import peak_for_precision
from ..hardware.catalog import get_device
from ..core.errors import UserError
from ..core.units import parse_size
from ..report.schema import Report
from ..report.sections import ParamsSection
from ..trace.cache import traced_step
from ..workload import Layout, Workload, check_against_model, micro_batch_of
from .common import add_default_seq, base_report, resolve_model, reuses_traces
from .parts import add_memory
from .predict import memory_extras
from .runnable import default_precision, micro_batch_workload, own_layout_batch, planner_decides, runnable, \
    traced_run


@reuses_traces
def memory(model: Any = None, workload: Workload | None = None, inputs: Sequence[Any] = (),
           inputs_ref: str | None = None, *, device_memory: int | str | None = None, max_batch: bool = False,
           other_bytes: int | str | None = None, cache: bool = True) -> Report:
    """Per-device memory of ``workload`` by component, whether it fits, and the largest batch that fits.

    The model is traced at the per-device micro-batch (``batch / (dp × grad_accum)``) and the traced step's
    allocation timeline is replayed for the workload's layout (ZeRO, TP/PP/EP, offload, recomputation).

    Args:
        model, workload, inputs, inputs_ref: as for :func:`mlfootprint.count`.
        device_memory: one device's memory in bytes or as text ("80GB", "80GiB"); default: the
            workload's ``device_memory``, else its ``hardware``'s catalog figure.
        max_batch: also search for the largest batch that fits, by re-tracing (needs a device size).
        other_bytes: per-device framework overhead (bytes or "1GB"); default: the memory model's 1 GB.
        cache: reuse a trace from the persistent trace cache (default True); False (``--no-cache``) traces
            anew and stores nothing.

    Returns:
        A Report with ``params`` and ``memory`` sections (``memory.peak_bytes``, ``memory.fits``).

    Example:
        >>> rep = mf.memory("llama-2-7b", mf.Workload(mode="train", seq=2048, precision="bf16-mixed",
        ...                                           zero=3, dp=8, hardware="a100-80gb"))
        >>> rep.sections["memory"]["fits"]
    """
    wl = workload or Workload()
    if device_memory is not None:
        wl = wl.with_changes(device_memory=_size(device_memory, "device_memory"))
    if other_bytes is not None:
        wl = wl.with_changes(other_bytes=_size(other_bytes, "other_bytes", zero_ok=True))
    if max_batch and wl.device_memory is None and not wl.hardware:
        raise UserError("--max-batch needs a device memory size: give --device-memory 80GB or --hardware ID")
    dev = get_device(wl.hardware) if wl.hardware else None
    wl, precision_note = default_precision(wl, dev)
    if dev is not None and dev.kind != "cpu":
        peak_for_precision(dev, wl.precision)  # a dtype the device cannot run is refused, as predict refuses it
    spec = resolve_model(model, inputs, inputs_ref)
    planned = dev is not None and planner_decides(wl)
    batch_note = None
    if not planned:  # (the planner's layouts are checked as it lays them out)
        # (the batch of --input shapes is the trace's, read below)
        # (--max-batch searches the batch: the workload keeps the batch given, one sample per replica by default)
        wl, batch_note = own_layout_batch(spec, wl, dev, per_replica=not (inputs or inputs_ref),
                                          planner_default=not max_batch)
        layout = Layout.from_workload(wl)
        check_against_model(layout, spec.facts or {}, None, wl.training)
    if planned:
        # only --devices given: the planner's layout, as analyze and predict take it (it plans from the whole model
        # at the global batch); its memory is then that layout's
        tr, run = traced_run(spec, wl, dev)
        wl, layout = run.workload, run.layout
    else:
        traced_wl = micro_batch_workload(wl, micro_batch_of(wl))
        tr = traced_step(spec, traced_wl)
        if "batch" not in wl.given and not wl.micro_batch and wl.batch == 1:
            layout = layout.replace(micro_batch=tr.memory.batch)  # the batch of --input shapes / an inputs callable
        run = runnable(spec, wl, tr, dev, layout=layout, traced_wl=traced_wl)
        if run.layout.micro_batch != layout.micro_batch:
            # the micro-batch the memory model chose, traced itself (the figures are its trace's, not scaled)
            traced_wl = micro_batch_workload(run.workload, run.layout.micro_batch)
            tr = traced_step(spec, traced_wl)
            chosen = runnable(spec, run.workload, tr, dev, layout=run.layout, traced_wl=traced_wl,
                              choose_micro_batch=False)
            chosen.notes = run.notes + chosen.notes
            run = chosen
    rep = base_report("memory", spec, run.workload)
    add_default_seq(rep, tr, tr.memory.batch or tr.workload.batch)
    params = parameter_stats(tr)
    rep.add(ParamsSection(**vars(params)), {k: "counted" for k in vars(params) if k != "by_dtype"
                                             and getattr(params, k) is not None})
    extra = memory_extras(run)
    if max_batch:
        probes: list[tuple[int, int, bool, bool]] = []
        best = _max_batch(spec, wl, run.device_bytes, other_bytes=wl.other_bytes, trace=tr, probes=probes)
        extra.update(max_micro_batch=best, max_batch=best * layout.dp * layout.grad_accum,
                     max_batch_traces=sum(1 for _, _, new, _ in probes if new))  # traces made by the search itself
        derived = sorted(mb for mb, _, _, was_derived in probes if was_derived)
    add_memory(rep, run.estimate, run.workload, **extra)
    for note in ([precision_note] if precision_note else []) + ([batch_note] if batch_note else []) + run.notes:
        rep.assume(note, key=True)
    if max_batch:
        rep.mark("memory.max_batch", "counted")
        rep.mark("memory.max_micro_batch", "counted")
        rep.assume("memory: max_batch is the largest global batch (max_micro_batch × dp × grad_accum) whose traced "
                   "peak fits; found by re-tracing (a guess from one trace, then galloping and bisection), "
                   "each verdict from a trace at that micro-batch, and the answer and the next micro-batch always "
                   "from real traces")
        if derived:
            rep.assume(f"memory: the traces of micro-batch(es) {', '.join(map(str, derived))} in that search were "
                       "derived, not traced: every op record's FLOPs and bytes, allocation size, saved tensor and "
                       "input on the line through two real traces of the same step at other micro-batches (exact "
                       "for a step affine in the batch; the answer was then confirmed by real traces)")
    for a in tr.assumptions:
        rep.assume(a)
    return rep


_max_batch = max_batch  # the search (analysis.memory.model.max_batch); the verb's flag shadows the name


def _size(value: int | str, option: str, zero_ok: bool = False) -> int:
    size = parse_size(value, f"--{option.replace('_', '-')}")
    if size < (0 if zero_ok else 1):
        raise UserError(f"--{option.replace('_', '-')} must be {'zero or ' if zero_ok else ''}positive, got {value!r}")
    return size
