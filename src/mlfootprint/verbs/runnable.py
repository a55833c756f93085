"""Defaults that give a run someone would really do, and advice when a workload does not fit.

* precision: on a device with a bf16 peak, training defaults to bf16-mixed and inference to bf16;
* layout: ``devices`` with no layout option takes the planner's best layout (training);
* micro-batch: with no micro-batch or accumulation given, the largest micro-batch that divides the
  per-replica batch and fits (training);
* not fitting: the smallest single changes that fit (recomputation, a ZeRO stage, a micro-batch of one,
  bf16 weights, quantization, more devices, LoRA), each checked by the memory model.

Every default taken is stated in the report's assumptions and left out of ``workload.given``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..analysis.memory.model import MemoryEstimate, MemoryModel, device_bytes_for, memory_model
from ..analysis.predict.efficiency import efficiency_for
from ..analysis.predict.prediction import fastest
from ..analysis.predict.planner import RECOMPUTE_CHOICES, NoLayoutFits, device_capacity, plan as plan_layouts
from ..analysis.predict.shape import global_batch
from ..core.datafiles import SourcedConstants
from ..core.errors import UserError
from ..core.forked import Speculation, balanced_shares, can_fork, default_jobs, run_shares
from ..hardware.catalog import Device
from ..models.hf import TEXT_TASKS, default_seq
from ..models.spec import ModelSpec
from ..trace.records import Trace
from ..trace.cache import trace_ready, traced_step, warm_up
from ..workload import Layout, Workload

DEFAULTS = SourcedConstants("verbs", "defaults.toml", "defaults")
# The layout options (``planner_decides``): those the planner takes as fixed choices, and the ones that, all given,
# are a whole layout (the planner is not asked).
_LAYOUT_OPTIONS = ("tp", "pp", "dp", "ep", "zero", "zeropp", "shard_group", "offload", "micro_batch", "grad_accum",
                   "recompute", "cp", "vp", "schedule", "cp_comm")
_FIXABLE = ("tp", "pp", "cp", "vp", "ep", "zero", "micro_batch", "recompute", "schedule", "offload", "cp_comm")
_WHOLE_LAYOUT = ("tp", "pp", "zero", "micro_batch", "recompute")


def default_precision(wl: Workload, device: Device | None) -> tuple[Workload, str | None]:
    """The workload with the precision a run on ``device`` would use, unless one was given."""
    if "precision" in wl.given or device is None or device.kind == "cpu" or "bf16" not in device.peak_flops:
        return wl, None
    key = "training_with_bf16" if wl.training else "inference_with_bf16"
    chosen = DEFAULTS.value("precision", key)
    if chosen == wl.precision:
        return wl, None
    return wl.with_defaults(precision=chosen), (
        f"precision {chosen}: the default for {'training' if wl.training else 'inference'} on a device with "
        f"bf16 ({device.id}); pass --precision fp32 for full precision")


@dataclass
class Run:
    """The workload as it will run: its layout, its memory, and what would make it fit if it does not."""

    workload: Workload
    layout: Layout
    model: MemoryModel
    estimate: MemoryEstimate  # with the device's memory, when known
    device_bytes: int | None
    device_source: str
    notes: list[str] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    # A trace of one device's micro-batch under the chosen layout (its recomputation included), which the step's
    # time is predicted from; None: the trace the run was chosen from serves (it is already that micro-batch).
    step_trace: Trace | None = None

    @property
    def fits(self) -> bool | None:
        return self.estimate.fits


def runnable(spec: ModelSpec, wl: Workload, tr: Trace, device: Device | None, *, efficiency: Any = None,
             layout: Layout | None = None, traced_wl: Workload | None = None,
             choose_micro_batch: bool = True, advise: bool = True,
             tracer: Callable[[ModelSpec, Workload], Trace] | None = None,
             trace_at: MicroBatchTraces | None = None) -> Run:
    """Choose what the user left open (layout by the planner, micro-batch by the memory model), estimate the
    memory of the result and, when it does not fit, the changes that would.

    ``tr`` is a trace of ``traced_wl`` (default ``wl``: the whole model at the global batch, which the planner
    needs; the memory verb traces one device's micro-batch and passes its ``layout``). ``advise=False`` leaves
    the changes that fit to the caller (they trace more, so only the final estimate gets them). ``tracer`` lets
    the planner size and time the layouts it shows from their own micro-batch's trace (``planner.plan``), through
    ``trace_at`` when the caller made it (:func:`micro_batch_traces`)."""
    notes: list[str] = []
    planned = layout is None and device is not None and planner_decides(wl)
    if planned:
        try:
            wl, layout, note = _planned(spec, wl, tr, device, efficiency, tracer, trace_at)
        except NoLayoutFits as exc:
            if not _fixed_label(wl):
                raise  # only --devices: nothing to show but why
            # with some choices given, the card shows them (defaults for the rest) with what would make it fit
            planned = False
            note = f"the planner found no layout with {_fixed_label(wl)} that fits ({exc}); shown: your options " \
                   "with defaults for the rest"
        notes.append(note)
    mm = memory_model(spec, traced_wl or wl, tr)
    layout = layout or mm.layout()
    device_bytes, prov, source = device_bytes_for(wl)
    # the planner's micro-batch is its choice (the fastest it found that fits), not the memory model's to enlarge
    if choose_micro_batch and not planned and device_bytes is not None and wl.training and \
            not ({"micro_batch", "grad_accum"} & wl.given):
        wl, layout, note = _largest_micro_batch(mm, wl, layout, device_bytes, spec=spec, trace=tr, device=device,
                                                efficiency=efficiency)
        if note:
            notes.append(note)
    est = mm.per_device(layout).with_device(device_bytes, prov or "assumed")
    run = Run(wl, layout, mm, est, device_bytes, source if device_bytes is not None else "", notes)
    if advise and est.fits is False:
        run.suggestions = fit_suggestions(spec, wl, mm, layout, device_bytes, device)
    return run


def traced_run(spec: ModelSpec, wl: Workload, device: Device | None, *, efficiency: Any = None,
               checkpoint_early_stop: bool = True,
               tracer: Callable[[ModelSpec, Workload], Trace] | None = None) -> tuple[Trace, Run]:
    """Trace ``wl`` and choose what the user left open (``runnable``), the step covering the global batch the
    report states: ``--batch`` left at 1 with several data-parallel replicas reads as one sample per replica
    (``analysis/predict/shape.global_batch``), so the workload takes that batch as a default and the trace, the
    FLOPs, the memory and the time all cover the same samples. When the planner chooses the layout and no --batch
    is given, the global batch is the planner's (``planner_batch``: about 4M tokens of a text model), as ``plan``
    lays it out.

    The run's memory and its ``step_trace`` (what the time is predicted from) come from a trace of one device's
    micro-batch: scaling the global batch's trace down would also divide what one micro-batch does whatever its
    size (autocast's weight casts, a layer's gradient buffers, the embedding's full gradient, the reads of norm
    weights) by the number of micro-batches. ``tracer`` traces a workload (default: ``traced_step`` with
    ``checkpoint_early_stop``)."""
    if tracer is None:
        def tracer(s: ModelSpec, w: Workload) -> Trace:
            return traced_step(s, w, checkpoint_early_stop=checkpoint_early_stop)
    planned = device is not None and planner_decides(wl)
    if planned and "batch" not in wl.given:
        # the planner's own global batch, as 'mlfootprint plan' lays it out (the same layout for the same options)
        batch, notes = planner_batch(spec, wl, wl.devices, efficiency_for(device, efficiency))
        wl, note = wl.with_defaults(batch=batch), notes[0] + ", laid out by the planner as 'mlfootprint plan' does"
    else:
        wl, note = own_layout_batch(spec, wl, device, efficiency)
    # the planner scales a trace without recomputation (a fixed --recompute is then traced at the micro-batch)
    global_wl = wl.with_changes(recompute="none", given=wl.given) if planned and wl.recompute != "none" else wl
    trace_at = None
    if planned and device is not None:
        trace_at = micro_batch_traces(spec, wl, tracer, global_wl, device, wl.devices or 1,
                                      planner_fixed(wl)["micro_batch"], checkpoint_early_stop=checkpoint_early_stop)
    try:
        tr = tracer(spec, global_wl)
        run = runnable(spec, wl, tr, device, efficiency=efficiency, advise=False, tracer=tracer, trace_at=trace_at)
    finally:
        if trace_at is not None:
            trace_at.end()
    micro = run.layout.micro_batch
    if (run.workload.training or run.layout.dp > 1) and (micro != (tr.memory.batch or tr.workload.batch)
                                  or _checkpointed(run.workload) != _checkpointed(tr.workload)
                                  or run.workload.weights_16bit != tr.workload.weights_16bit):
        # One device's micro-batch under the chosen layout, as the memory verb traces it (the class notes why)
        micro_wl = micro_batch_workload(run.workload, micro)
        step_trace = tracer(spec, micro_wl)
        exact = runnable(spec, run.workload, step_trace, device, efficiency=efficiency,
                         layout=run.layout, traced_wl=micro_wl, choose_micro_batch=False)
        exact.notes = run.notes + exact.notes
        exact.step_trace = step_trace
        run = exact
    elif run.fits is False:
        run.suggestions = fit_suggestions(spec, run.workload, run.model, run.layout, run.device_bytes, device)
    if note:
        run.notes.append(note)
    own = _own_layout_note(wl)
    if own:
        run.notes.insert(0, own)  # first: what the user most likely did not mean
    return tr, run


def _own_layout_note(wl: Workload) -> str | None:
    """Why the planner was not asked for a training layout on several devices, when an option it does not search
    (--grad-accum, --zeropp, --shard-group, ...) was given without --dp: the rest of the layout then takes its
    defaults, which the user may not expect. None for the whole layout given, or --dp (a layout by intent)."""
    if not (wl.training and wl.devices and wl.devices > 1) or planner_decides(wl):
        return None
    given = set(_LAYOUT_OPTIONS) & wl.given
    unsearched = sorted(given - set(_FIXABLE)) + (["recompute"] if "recompute" in given
                                                   and wl.recompute not in RECOMPUTE_CHOICES else [])
    if not set(unsearched) - {"dp"}:
        return None  # the whole layout given, or --dp: a layout of one's own by intent
    named = ", ".join(f"--{n.replace('_', '-')} {getattr(wl, n)}" for n in unsearched)
    left = [f"--{n.replace('_', '-')} {getattr(wl, n)}" for n in ("tp", "pp", "zero", "recompute")
            if n not in wl.given]
    return (f"a layout of your own: the planner does not search {named}, so it was not asked"
            + (f" and the rest takes its defaults ({', '.join(left)})" if left else "")
            + "; drop it for the planner's layout ('mlfootprint plan' ranks them)")


class MicroBatchTraces:
    """The planner's ``trace_at``: a trace of one device's micro-batch of ``mb`` samples of ``wl`` with working
    weights of ``mixed_weights``. Each is traced, not derived from two others (``trace/scaling.py``): a step is not
    affine in the batch across every size (an embedding's reads are capped by its table, a batch of one skips
    copies and reductions), and the layouts shown must be the ones ``predict`` then times. ``speculate`` starts
    tracing the ones the planner will probably ask for in a forked worker before the planner knows them;
    ``prefetch`` traces the ones the planner expects to ask for side by side (``core/forked.py``), where that is
    safe. Either way a trace is the one ``tracer`` makes."""

    def __init__(self, spec: ModelSpec, wl: Workload, tracer: Callable[[ModelSpec, Workload], Trace],
                 jobs: int | None = None) -> None:
        self.spec, self.wl, self.tracer = spec, wl, tracer
        self.jobs = jobs  # processes at most, this one included (None: default_jobs())
        self.made: dict[tuple[int, str], Trace] = {}
        self.speculation: Speculation | None = None

    def _jobs(self) -> int:
        return self.jobs if self.jobs is not None else default_jobs()

    def speculate(self, keys: list[tuple[int, str]]) -> None:
        """Start tracing ``keys`` (micro-batch, working weights) in a forked worker, while this process traces the
        global batch and ranks the layouts by it (:meth:`prefetch` then shares the work with it)."""
        self.end()
        self.speculation = Speculation(self._trace, keys, jobs=self._jobs())

    def workload(self, mb: int, mixed_weights: str) -> Workload:
        """The workload the trace of micro-batch ``mb`` with working weights ``mixed_weights`` is made from."""
        micro = micro_batch_workload(self.wl, mb)
        return micro.with_changes(given=micro.given, mixed_weights=mixed_weights)

    def end(self) -> None:
        """Take what the speculating worker finished, and end it."""
        if self.speculation is not None:
            pending, self.speculation = self.speculation, None
            for i, tr in pending.take().items():
                self.made.setdefault(pending.items[i], tr)

    def _trace(self, key: tuple[int, str]) -> Trace:
        return self.tracer(self.spec, self.workload(*key))

    def __call__(self, mb: int, mixed_weights: str) -> Trace:
        key = (mb, mixed_weights)
        if key not in self.made:
            self.end()
        if key not in self.made:
            self.made[key] = self._trace(key)
        return self.made[key]

    def prefetch(self, keys: list[tuple[int, str]]) -> None:
        todo = [k for k in dict.fromkeys(keys) if k not in self.made]
        if self.speculation is not None and self.speculation.running and min(len(todo), self._jobs()) <= 2:
            # the speculating worker and this process share what is left (no other CPU to give work to)
            speculation, self.speculation = self.speculation, None
            self.made.update(zip(todo, speculation.share(todo, self._trace)))
            return
        self.end()  # more CPUs than two: the speculating worker hands over what it finished, workers do the rest
        todo = [k for k in todo if k not in self.made]
        jobs = min(len(todo), self._jobs())
        if jobs < 2 or not can_fork():
            return  # traced here, when asked
        shares = [[todo[i] for i in share] for share in balanced_shares(todo, lambda k: 1.0, lambda k: k, jobs)]
        for share, traces in zip(shares, run_shares(lambda share: [self(*k) for k in share], shares)):
            self.made.update(zip(share, traces))


def micro_batch_traces(spec: ModelSpec, wl: Workload, tracer: Callable[[ModelSpec, Workload], Trace],
                       global_wl: Workload, device: Device, devices: int, micro_batch: int | None, *,
                       checkpoint_early_stop: bool, jobs: int | None = None) -> MicroBatchTraces:
    """The planner's ``trace_at`` for a plan of ``devices`` × ``device`` (``micro_batch``: a given one); while the
    global batch's trace (``global_wl``) is still to be made, the micro-batches the planner will probably ask for
    (:func:`likely_keys`) are started meanwhile on a second CPU, after the model's code is imported (once, here);
    ``jobs``: processes at most, this one included (None: one per CPU, at most four)."""
    trace_at = MicroBatchTraces(spec, wl, tracer, jobs)
    if trace_at._jobs() >= 2 and can_fork() and not trace_ready(spec, global_wl,
                                                                  checkpoint_early_stop=checkpoint_early_stop):
        keys = [k for k in likely_keys(spec, wl, devices, float(device_capacity(wl, device)), micro_batch)
                if not trace_ready(spec, trace_at.workload(*k), checkpoint_early_stop=checkpoint_early_stop)]
        if keys:
            warm_up(spec, global_wl)
            trace_at.speculate(keys)
    return trace_at


def likely_keys(spec: ModelSpec, wl: Workload, devices: int, device_bytes: float,
                micro_batch: int | None = None) -> list[tuple[int, str]]:
    """The (micro-batch, working weights) traces a plan of ``devices`` devices of ``device_bytes`` each will most
    probably ask for, guessed before any trace: for a model whose weights and Adam states (16 bytes a parameter,
    counted roughly from the config's shape) cannot fit on one device, every layout splits or shards it, so the
    16-bit working weights of such layouts (``Workload.mixed_weights_at``) at ``micro_batch`` (a given one), else
    at micro-batches 1, 2 and 4. No guess (empty) for a model that fits on one device (its layouts' micro-batches
    depend on the activations, which only the trace knows) or one without a config's shape. A wrong guess is only
    work a second CPU did meanwhile."""
    f = getattr(spec, "facts", None) or {}
    layers, hidden, ffn, vocab = (f.get(k) for k in ("layers", "hidden", "ffn", "vocab"))
    if not all(isinstance(v, int) and v > 0 for v in (layers, hidden, ffn, vocab)) or devices < 2:
        return []
    experts = f.get("experts") if isinstance(f.get("experts"), int) else 1
    params = layers * (4 * hidden * hidden + 3 * hidden * ffn * max(1, experts)) + vocab * hidden
    if params * 16 <= device_bytes:
        return []
    weights = wl.mixed_weights_at(3, devices)
    return [(mb, weights) for mb in ([micro_batch] if micro_batch else [1, 2, 4])]


def _checkpointed(wl: Workload) -> str:
    """What a trace of ``wl`` recomputes itself (selective recomputation is modelled on a trace without it)."""
    return wl.recompute if wl.recompute in ("full", "selective-op") else "none"


def micro_batch_workload(wl: Workload, micro_batch: int) -> Workload:
    """The workload of one device's micro-batch (what the memory model traces to size one device's step)."""
    return wl.with_changes(batch=micro_batch, micro_batch=None,
                           given=wl.given | ({"batch"} if "batch" in wl.given or micro_batch != 1 else set()))


def planner_batch(spec: ModelSpec, wl: Workload, devices: int, eff: Any, *, step: int | None = None,
                  step_text: str = "") -> tuple[int, list[str]]:
    """The global batch the planner lays out: the batch given, or about ``plan_batch_tokens`` tokens of a text
    model (``finetune_batch_samples`` samples of a LoRA fine-tune: a fine-tuning step) rounded up to a multiple of
    the devices (× a given --micro-batch, so that every data-parallel degree splits it into whole micro-batches;
    ``step``/``step_text``: another multiple, as the caller words it), one sample per device for other models.
    ``plan`` and the verbs whose layout the planner chooses share it, so the same command line gets the same
    layout."""
    if "batch" in wl.given:
        return wl.batch, []
    seq = _text_seq(spec, wl)
    if seq:
        if step is None:
            micro = wl.micro_batch if "micro_batch" in wl.given and wl.micro_batch else 1
            step = devices * micro
            step_text = _devices_text(devices) + (f" × micro-batch {micro}" if micro > 1 else "")
        rounded = f", rounded up to a multiple of {step_text}" if step > 1 else ""
        if wl.lora_rank:  # a LoRA fine-tune: a fine-tuning step's samples, not a pre-training step's tokens
            batch = math.ceil(int(eff["finetune_batch_samples"]) / step) * step
            return batch, [f"global batch {batch:,} × {seq:,} tokens: a fine-tuning batch of "
                           f"{int(eff['finetune_batch_samples'])} samples{rounded} "
                           f"({eff.factors['finetune_batch_samples'].source}; give --batch for another)"]
        want = max(1, math.ceil(eff["plan_batch_tokens"] / seq))
        batch = math.ceil(want / step) * step
        return batch, [f"global batch {batch:,} × {seq:,} tokens: about {int(eff['plan_batch_tokens']):,} tokens"
                       f"{rounded} ({eff.factors['plan_batch_tokens'].source}; give --batch for another)"]
    return devices, [f"global batch {devices:,}: one sample per device (give --batch for another)"]


def _devices_text(n: int) -> str:
    return f"{n:,} device" + ("s" if n != 1 else "")


def _text_seq(spec: ModelSpec, wl: Workload) -> int | None:
    """The sequence length of a text model's samples (given, or the model's default); None for other models."""
    seq = wl.seq or (default_seq(spec) if spec.source != "factory" else None)
    return seq if seq and spec.task in TEXT_TASKS else None


def _at_global_batch(wl: Workload) -> tuple[Workload, str | None]:
    batch, note = global_batch(wl)
    if batch == wl.batch:
        return wl, None
    return wl.with_defaults(batch=batch), f"batch {batch}: {note}"


def own_layout_batch(spec: ModelSpec, wl: Workload, device: Device | None, efficiency: Any = None, *,
                     per_replica: bool = True, planner_default: bool = True) -> tuple[Workload, str | None]:
    """The workload of a layout of the user's own at the global batch it steps over, with a note when not given.

    Training a text model without --batch, on one device or several, the global batch is the planner's
    (``planner_batch``: about 4M tokens, a multiple of the devices) rounded up to whole steps of the micro-batch and
    accumulation given, so that ``--devices 8`` and ``--devices 8 --dp 8`` step over the same samples (the layout of
    your own read one sample per replica, 512× fewer), and one device steps over what eight do (it trained one
    sample at a time, at a micro-batch nobody runs). The micro-batch is then the memory model's choice on a device
    of known size (``runnable``), else one sample, accumulated. Given --micro-batch and --grad-accum are a whole step;
    other models and other modes keep ``global_batch``'s reading (``per_replica=False``: the workload as it is, for
    the memory model to read so; ``planner_default=False``: no planner's batch, for a caller that searches the
    batch itself)."""
    devices = wl.devices or wl.dp * wl.model_split
    if not (planner_default and wl.training and _text_seq(spec, wl)) or "batch" in wl.given or wl.batch != 1 \
            or {"micro_batch", "grad_accum"} <= wl.given:
        return _at_global_batch(wl) if per_replica else (wl, None)
    unit = wl.dp * (wl.micro_batch or 1) * (wl.grad_accum if "grad_accum" in wl.given else 1)
    whole = math.lcm(devices, unit)
    parts = [f"--dp {wl.dp}"] + ([f"--micro-batch {wl.micro_batch}"] if wl.micro_batch else []) \
        + ([f"--grad-accum {wl.grad_accum}"] if "grad_accum" in wl.given else [])
    words = _devices_text(devices) if whole == devices else \
        f"{_devices_text(devices)} and of {unit:,} ({' × '.join(parts)})"
    batch, notes = planner_batch(spec, wl, devices, efficiency_for(device, efficiency), step=whole, step_text=words)
    note = notes[0]
    out = wl.with_defaults(batch=batch)
    if wl.micro_batch is None and "grad_accum" not in wl.given and device_bytes_for(wl)[0] is None:
        out = out.with_defaults(micro_batch=1)  # no device to choose one by: one sample, accumulated
        note += "; micro-batch 1 (no device memory to choose a larger one by: give --hardware or --micro-batch)"
    if out.micro_batch is not None and "grad_accum" not in wl.given:
        # the accumulation the batch implies (a defaulted batch is not read as one micro-batch per replica)
        out = out.with_defaults(grad_accum=batch // (wl.dp * out.micro_batch))
    elif out.micro_batch is None and "grad_accum" in wl.given:
        out = out.with_defaults(micro_batch=batch // (wl.dp * wl.grad_accum))  # what the accumulation leaves
    return out, note


def planner_decides(wl: Workload) -> bool:
    """Whether the planner chooses the layout, or the rest of it: training on several devices, where the options
    given fix some of the planner's choices (``planner_fixed``) but not the whole layout. All of --tp, --pp, --zero,
    --micro-batch and --recompute given, or any option the planner does not search (--dp, --zeropp,
    --shard-group, --grad-accum, a recomputation it does not derive), is a layout of the user's own: what is left
    out takes its default."""
    if not (wl.training and wl.devices and wl.devices > 1):
        return False
    given = set(_LAYOUT_OPTIONS) & wl.given
    if given - set(_FIXABLE) or ("recompute" in given and wl.recompute not in RECOMPUTE_CHOICES):
        return False
    return not set(_WHOLE_LAYOUT) <= given


def planner_fixed(wl: Workload) -> dict[str, Any]:
    """The planner's choices the workload's given options fix (``planner.plan``'s keyword arguments)."""
    def given(name: str) -> Any:
        return getattr(wl, name) if name in wl.given else None
    return {"tp": given("tp"), "pp": given("pp"), "cp": given("cp"), "zero": given("zero"),
            "micro_batch": given("micro_batch"), "recompute": given("recompute"), "vp": given("vp"),
            "schedule": given("schedule"), "offload": wl.offload, "cp_comm": wl.cp_comm}


def _fixed_label(wl: Workload) -> str:
    """The given options the planner kept, as typed: '--tp 2 --recompute full'."""
    return " ".join(f"--{name.replace('_', '-')} {getattr(wl, name)}" for name in _FIXABLE if name in wl.given)


def _planned(spec: ModelSpec, wl: Workload, tr: Trace, device: Device, efficiency: Any,
             tracer: Callable[[ModelSpec, Workload], Trace] | None = None,
             trace_at: MicroBatchTraces | None = None) -> tuple[Workload, Layout, str]:
    """The planner's best layout for ``wl.devices`` devices (the trace is the whole model at the global batch),
    the first row of ``plan``'s table (the same number of layouts ranked again from their own micro-batches)."""
    if tr.workload.recompute != "none":
        raise UserError("internal: the planner needs a trace without recomputation")
    res = plan_layouts(spec, wl, tr, device, wl.devices, efficiency=efficiency, **planner_fixed(wl),
                       trace_at=trace_at or (MicroBatchTraces(spec, wl, tracer) if tracer else None))
    best = res.best
    full = best.memory.layout  # the layout the memory model checked (precision, accumulation, sequence parallel)
    # the stack's choices, not the planner's
    full = full.replace(tp_comm_overlap=wl.tp_comm_overlap, tp_overlap=wl.tp_overlap,
                        pp_comm_overlap=wl.pp_comm_overlap, grad_reduce=wl.grad_reduce,
                        tp_backward=wl.tp_backward, zero_impl=wl.zero_impl, etp=wl.etp)
    wl = wl.with_defaults(tp=full.tp, pp=full.pp, zero=full.zero, zeropp=full.zeropp, micro_batch=full.micro_batch,
                          recompute=full.recompute, cp=full.cp, vp=full.vp, schedule=full.schedule)
    memory = f" of {wl.device_memory / 2**30:.1f} GiB each (--device-memory)" if wl.device_memory else ""
    fixed = _fixed_label(wl)
    return wl, full, (f"layout {best.par.label()}: the planner's best for {wl.devices} × {device.id}{memory}"
                      f"{f' with {fixed} as given' if fixed else ''} (the fastest of {res.considered} layouts that "
                      "fits; see 'mlfootprint plan'); --tp/--pp/--cp/--vp/--zero/--micro-batch/--recompute each fix "
                      "that choice and the planner chooses the rest; --tp, --pp, --zero, --micro-batch and "
                      "--recompute together (or --dp) are a layout of your own, with defaults for the rest")


def _largest_micro_batch(mm: MemoryModel, wl: Workload, layout: Layout, device_bytes: int, *,
                         spec: ModelSpec | None = None, trace: Trace | None = None, device: Device | None = None,
                         efficiency: Any = None) -> tuple[Workload, Layout, str | None]:
    """The largest micro-batch that divides the per-replica batch and fits (the rest is accumulated). Under
    pipeline parallelism, with a device to time on, the fastest that fits instead: a larger micro-batch leaves
    fewer micro-batches to fill the pipeline, so the largest is the one with the biggest bubble."""
    per_replica = layout.micro_batch * layout.grad_accum
    if per_replica <= 1:
        return wl, layout, None
    fitting: list[Layout] = []
    for b in sorted(_divisors(per_replica), reverse=True):
        candidate = layout.replace(micro_batch=b, grad_accum=per_replica // b)
        try:
            fits = mm.per_device(candidate).peak_bytes <= device_bytes
        except UserError:
            continue
        if fits:
            fitting.append(candidate)
            if layout.pp == 1:
                break  # no pipeline to fill: the largest that fits
    if fitting:
        best, why = fitting[0], "the largest micro-batch of the {n} samples per replica that fits (chosen by the " \
                                "memory model; give --micro-batch to choose)"
        if layout.pp > 1 and device is not None and spec is not None and trace is not None:
            try:
                best, _ = fastest(spec, wl, trace, device, fitting, efficiency=efficiency)
            except UserError:
                pass
            why = (f"of the micro-batches of the {{n}} samples per replica that fit (the memory model), the fastest "
                   f"over {layout.pp} pipeline stages (a larger one leaves fewer micro-batches to fill the pipeline; "
                   "give --micro-batch to choose)")
        b = best.micro_batch
        if b == layout.micro_batch:
            return wl, layout, None
        return wl.with_defaults(micro_batch=b), best, (f"micro-batch {b} with {per_replica // b} accumulation steps: "
                                                       + why.format(n=per_replica))
    # nothing fits: show the most frugal micro-batch, so the figure and the advice start from there
    frugal = layout.replace(micro_batch=1, grad_accum=per_replica)
    return wl.with_defaults(micro_batch=1), frugal, (
        f"micro-batch 1 with {per_replica} accumulation steps: not even one sample per micro-batch fits, so the "
        "memory shown is the smallest micro-batch's")


def _divisors(n: int) -> set[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return set(small) | {n // d for d in small}


# ------------------------------------------------------------------------------------------ advice


def fit_suggestions(spec: ModelSpec, wl: Workload, mm: MemoryModel, layout: Layout, device_bytes: int,
                    device: Device | None, limit: int = 5) -> list[dict[str, Any]]:
    """The smallest changes that make the workload fit, each checked by the memory model.

    Changes are tried alone, then together (a micro-batch of one with full recomputation is the cheapest
    pair), then with more devices (the fewest that fit) and LoRA; the ones that fit are ranked by the devices
    they use and by how many options they change."""
    training = wl.training
    knobs: list[tuple[str, dict[str, Any]]] = []  # (options, layout changes)
    if training and layout.recompute != "full":
        knobs.append(("--recompute full", {"recompute": "full"}))
    if layout.micro_batch > 1:
        knobs.append(("--micro-batch 1", {"micro_batch": 1, "grad_accum": layout.micro_batch * layout.grad_accum}))
    if training and layout.dp > 1 and layout.zero < 3:
        knobs.append(("--zero 3", {"zero": 3}))
    if layout.precision == "fp32" and device is not None and "bf16" in device.peak_flops:
        knobs.append(("--precision " + ("bf16-mixed" if training else "bf16"),
                      {"precision": "bf16-mixed" if training else "bf16"}))
    found: list[dict[str, Any]] = []
    tried: set[str] = set()
    recomputed: list[MemoryModel | None] = []  # the step traced with full recomputation, made when first needed

    def model_for(candidate: Layout) -> MemoryModel:
        # a change to full recomputation is checked on a trace that recomputes (checkpointed blocks keep their
        # inputs only), so the figure shown is the one the changed run reports
        if candidate.recompute != "full" or mm.traced_recompute == "full":
            return mm
        if not recomputed:
            recomputed.append(_recomputed_model(spec, mm))
        return recomputed[0] or mm

    def attempt(changes: list[tuple[str, dict[str, Any]]], quant: str | None = None,
                model: MemoryModel | None = None, extra: str = "") -> bool:
        label = " ".join([c for c, _ in changes] + ([extra] if extra else []))
        if label in tried:
            return False
        tried.add(label)
        candidate = layout
        for _, change in changes:
            candidate = candidate.replace(**change)
        try:
            peak = (model or model_for(candidate)).per_device(candidate, quant=quant).peak_bytes
        except UserError:
            return False
        if peak > device_bytes:
            return False
        # a change to 16-bit working weights (ZeRO-3, a model split) sized on an autocast trace: its fp32
        # residual stream makes the figure an upper bound
        at_most = bool(wl.mixed and wl.mixed_weights_at(layout.zero, layout.model_split) == "fp32"
                       and wl.mixed_weights_at(candidate.zero, candidate.model_split) == "16-bit")
        found.append({"change": label, "peak_bytes": int(peak), "devices": candidate.devices, "at_most": at_most})
        return True

    alone = [knob for knob in knobs if not attempt([knob])]  # one change; those that do not fit alone:
    for i, first in enumerate(alone):  # two of them together, on the same devices (--zero 3 --recompute full)
        for second in alone[i + 1:]:
            attempt([first, second])
    cheap = [k for k in knobs if k[0] in ("--recompute full", "--micro-batch 1")]
    subsets = [[], *([c] for c in cheap), *([cheap] if len(cheap) == 2 else [])]  # none, each, both
    if not training and wl.quant == "none":
        for q in ("int8", "int4"):
            if any(attempt(changes, quant=q, extra=f"--quant {q}") for changes in subsets):
                break
    _more_devices(attempt, layout, training, spec, subsets)
    if training and not wl.lora_rank and not any(s["devices"] == layout.devices for s in found):
        lora_mm = _lora_model(spec, wl, layout)
        if lora_mm is not None:
            for changes in subsets:
                if attempt(changes, model=lora_mm, extra="--lora-rank 8") or \
                        attempt(changes, quant="int4", model=lora_mm, extra="--lora-rank 8 --quant int4"):
                    break
    # a change that holds a smaller one that fits is not the smallest (--devices 16 --zero 3 beside --zero 3)
    options = [set(_options(s["change"])) for s in found]
    found = [s for s, mine in zip(found, options) if not any(other < mine for other in options)]
    found.sort(key=lambda s: (s["devices"], s["change"].count("--"), s["peak_bytes"]))
    return found[:limit]


def _options(change: str) -> list[str]:
    """'--devices 16 --zero 3' → ['--devices 16', '--zero 3']."""
    return ["--" + part.strip() for part in change.split("--") if part.strip()]


def _more_devices(attempt: Any, layout: Layout, training: bool, spec: ModelSpec,
                  subsets: list[list[tuple[str, dict[str, Any]]]]) -> None:
    """The fewest devices that fit: ZeRO-3 data parallelism for training, tensor (or pipeline) parallelism for
    inference; with the cheap changes when the devices alone are not enough."""
    heads = (spec.facts or {}).get("heads")
    n = layout.devices
    cp = layout.cp  # kept: the devices are dp × tp × pp × cp
    for _ in range(12):
        n *= 2
        if training:
            more = (f"--devices {n} --zero 3", {"dp": max(1, n // (layout.tp * layout.pp * cp)), "zero": 3})
        elif heads and heads % (n // cp) == 0:
            more = (f"--devices {n} --tp {n // cp}", {"tp": n // cp, "dp": 1})
        else:
            more = (f"--devices {n} --pp {n // cp}", {"pp": n // cp, "dp": 1})
        if any(attempt([more] + changes) for changes in subsets):
            return


def _recomputed_model(spec: ModelSpec, mm: MemoryModel) -> MemoryModel | None:
    """The memory model of the same traced step with full recomputation (None when it cannot be traced)."""
    try:
        traced = mm.trace.workload.with_changes(recompute="full")
        return memory_model(spec, mm.wl.with_changes(recompute="full"), traced_step(spec, traced))
    except UserError:
        return None


def _lora_model(spec: ModelSpec, wl: Workload, layout: Layout) -> MemoryModel | None:
    """A memory model of the workload with LoRA rank-8 adapters (one more trace: adapters change what trains)."""
    try:
        lora_wl = wl.with_changes(lora_rank=8, batch=layout.micro_batch, micro_batch=None, dp=1, devices=None,
                                  grad_accum=1)
        return memory_model(spec, lora_wl, traced_step(spec, lora_wl))
    except UserError:
        return None
