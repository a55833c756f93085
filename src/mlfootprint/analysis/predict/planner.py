"""The planner: parallel layouts for N devices, kept when they fit in memory, ranked by predicted throughput.

Enumerates tensor (TP) × context (CP) × pipeline (PP, with virtual stages VP) ×
data (DP) parallel degrees with a ZeRO stage, a micro-batch size and a
recomputation choice for one global batch. A cheap lower bound on the memory
of the first and the biggest stage (weights, gradients, optimizer states of its
blocks, sharded as the layout shards them, and the activations its in-flight
micro-batches save) prunes layouts that cannot fit before their step time is
computed; each remaining layout's step time comes from one
roofline profile of one trace (O(1) per layout); whether it fits comes from the
memory model (``memory_model(spec, wl, trace).per_device(layout)``), asked in
rank order only until enough fitting layouts are found — except when none
fits, when the most frugal layout of each group is checked to say how far the
smallest one is from fitting.

Constraints: TP divides the attention heads and stays inside a node; PP is any
degree up to the layers (uneven stages: ``workload.stage_layers``); VP virtual
stages with a block in each chunk, an end chunk may hold the embedding or the
head alone (``workload.max_virtual_stages``); CP splits sequences
(divisible by 2·cp, ring attention) for sequences of at least
``plan_cp_min_seq`` tokens; DP divides the global batch; ZeRO 2/3 only without
pipeline parallelism (as in DeepSpeed); ZeRO++ is tried with ZeRO 3 when the
data-parallel group spans nodes. Offload is not enumerated.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import UserError
from ...core.progress import phase
from ...hardware.catalog import Device
from .efficiency import efficiency_for
from .roofline import build_profile
from .shape import model_shape
from .step import StepTime, step_time
from ...workload import Layout, check_against_model, max_virtual_stages, stage_layers
from ..memory.model import memory_model
from .prediction import _flops, resolve_device

RECOMPUTE_CHOICES = ("none", "selective", "full")
MICRO_BATCHES = (1, 2, 4, 8, 16, 32)
VIRTUAL_STAGES = (1, 2, 3, 4, 6, 8)
CONTEXT_PARALLEL = (1, 2, 4, 8, 16)
RETIMED = 10  # the fastest layouts that fit, by the scaled ranking, that micro-batch traces re-time and re-rank
PREFETCH_LOOKAHEAD = 200  # candidates the guess of the micro-batch traces needed looks at (global-trace checks)


class NoLayoutFits(UserError):
    """Every layout the planner may choose is over the device's memory (the message names the most frugal)."""


@dataclass
class Candidate:
    par: Layout
    st: StepTime
    tokens_per_s: float
    mfu: float
    hfu: float
    peak_bytes: float | None = None
    fits: bool | None = None
    memory: Any = None
    why: str = ""  # why it loses to the best layout ("" for the best)
    weights: str | None = None  # the working weights under mixed precision (Workload.mixed_weights_at): fp32 or 16-bit

    def to_dict(self) -> dict[str, Any]:
        p = self.par
        d = {"tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep, "zero": p.zero, "zeropp": p.zeropp,
             "micro_batch": p.micro_batch, "micro_batches": self.st.micro_batches, "recompute": p.recompute,
             "step_s": self.st.step_s, "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu,
             "peak_bytes": self.peak_bytes, "fits": self.fits, "bottleneck": self.st.bottleneck,
             "breakdown": dict(self.st.breakdown), "cp": p.cp, "vp": p.vp, "schedule": p.schedule,
             "cp_comm": p.cp_comm, "stage_layers": list(self.st.stages) or None,
             "bubble_fraction": self.st.bubble_fraction, "why": self.why, "weights": self.weights}
        return d


@dataclass
class PlanResult:
    layouts: list[Candidate]  # fitting, best first
    considered: int
    memory_checked: int
    device: Device
    devices: int
    global_batch: int
    explanation: str
    plan_s: float
    assumptions: list[str] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        return self.layouts[0]


def _divisors(n: int) -> list[int]:
    out = set()
    for i in range(1, int(math.isqrt(n)) + 1):
        if n % i == 0:
            out.add(i)
            out.add(n // i)
    return sorted(out)


def device_capacity(wl: Any, device: Device) -> int:
    """One device's memory a layout must fit in: ``--device-memory`` when given, else the catalog's."""
    return int(getattr(wl, "device_memory", None) or device.memory_bytes)


def _memory_checker(spec: Any, wl: Any, trace: Any, device: Device, model: Any = None):
    model = model or memory_model(spec, wl, trace)
    capacity = device_capacity(wl, device)

    def check(par: Layout) -> tuple[float, bool, Any]:
        m = max(1, wl.batch // (par.dp * par.micro_batch))
        layout = par.replace(precision=wl.precision, optimizer=wl.optimizer, grad_accum=m,
                             sequence_parallel=wl.sequence_parallel_at(par.tp))
        try:
            est = model.per_device(layout).with_device(capacity, "assumed" if getattr(wl, "device_memory", None)
                                                       else "published")
        except UserError:  # a layout the memory model refuses for this model
            return math.inf, False, None
        return float(est.peak_bytes), bool(est.fits), est

    return check


def enumerate_layouts(spec: Any, wl: Any, devices: int, device: Device, *, tp: int | None = None,
                      pp: int | None = None, zero: int | None = None, micro_batch: int | None = None,
                      recompute: str | None = None, ep: int = 1, shape: Any = None,
                      offload: str = "none", cp: int | None = None, vp: int | None = None,
                      schedule: str | None = None, cp_comm: str = "ring",
                      cp_min_seq: float | None = None) -> list[Layout]:
    """Every layout of the search space (see the module docstring), before any memory or time is asked.
    ``cp_min_seq``: the shortest sequence for which cp > 1 is tried (default: the efficiency factor
    ``plan_cp_min_seq``)."""
    if cp_min_seq is None:
        cp_min_seq = efficiency_for(device)["plan_cp_min_seq"]
    facts = spec.facts or {}
    heads = facts.get("heads")
    layers = facts.get("layers")
    dpn = int(device.devices_per_node or 1)
    transformer = bool(layers and facts.get("hidden") and shape is not None and shape.tokens_per_sample)
    seq = int(shape.tokens_per_sample) if transformer else None
    # a tensor-parallel group stays inside one node: its size divides the devices per node
    tps = [tp] if tp else [d for d in _divisors(devices) if dpn % d == 0 and (not heads or heads % d == 0)]
    if not transformer and not tp:
        tps = [1]
    out: list[Layout] = []
    B = wl.batch
    tp_overlap = bool(getattr(wl, "tp_comm_overlap", False))
    tp_overlap_how = getattr(wl, "tp_overlap", "userbuffers")  # the stack's, not searched
    pp_overlap = bool(getattr(wl, "pp_comm_overlap", False))  # the stack's, not searched
    grad_reduce = getattr(wl, "grad_reduce", "overlap")  # the stack's, not searched
    tp_backward = getattr(wl, "tp_backward", "auto")  # the stack's, not searched
    zero_impl = getattr(wl, "zero_impl", "auto")  # the stack's, not searched (FSDP2 runs no ZeRO++)
    etp = getattr(wl, "etp", None)  # the user's expert tensor parallelism: layouts whose tp it divides
    for t in tps:
        if devices % t or (etp is not None and (t % etp or ep <= 1)):
            continue
        cps = [cp] if cp else [c for c in CONTEXT_PARALLEL if transformer and (c == 1 or (
            seq >= cp_min_seq and _cp_ok(seq, heads, t, c, cp_comm)))] or [1]
        for c in cps:
            if devices % (t * c):
                continue
            rest = devices // (t * c)
            pps = [pp] if pp else [d for d in _divisors(rest) if (not layers or d <= layers)]
            if (not transformer or (zero or 0) >= 2) and not pp:  # ZeRO 2/3 (given) only without pipelining
                pps = [1]
            for p in pps:
                if rest % p:
                    continue
                dp = rest // p
                if B % dp or (ep > 1 and dp % ep):
                    continue
                per_replica = B // dp
                zeros = [zero] if zero is not None else ([0, 1] if p > 1 else [0, 1, 2, 3])
                if dp * c == 1 and zero is None:
                    zeros = [0]
                if offload != "none" and zero is None:  # ZeRO-Offload moves the partitioned optimizer states
                    zeros = [1] if p > 1 else [1, 2, 3]
                mbs = [b for b in ([micro_batch] if micro_batch else MICRO_BATCHES) if per_replica % b == 0]
                if not mbs:
                    continue
                rcs = [recompute] if recompute else list(RECOMPUTE_CHOICES)
                if p == 1:
                    if vp and vp > 1:
                        continue  # virtual stages given: only pipelined layouts
                    pipes = [(1, schedule or "1f1b")]
                elif schedule == "zero-bubble":
                    pipes = [(1, "zero-bubble")]
                else:
                    vps = [vp] if vp else [v for v in VIRTUAL_STAGES if layers and v <= max_virtual_stages(layers, p)]
                    pipes = [(v, "1f1b") for v in vps]
                for z in zeros:
                    variants = [False, True] if (z == 3 and t * c * dp > dpn and zero_impl != "fsdp2") else [False]
                    for zpp in variants:
                        for b in mbs:
                            for rc in rcs:
                                for v, sched in pipes:
                                    out.append(Layout(dp=dp, tp=t, pp=p, ep=ep, zero=z, micro_batch=b, recompute=rc,
                                                      zeropp=zpp, offload=offload, cp=c, vp=v, schedule=sched,
                                                      cp_comm=cp_comm, tp_comm_overlap=tp_overlap,
                                                      tp_overlap=tp_overlap_how,
                                                      pp_comm_overlap=pp_overlap,
                                                      grad_reduce=grad_reduce, tp_backward=tp_backward,
                                                      zero_impl=zero_impl, etp=etp,
                                                      sequence_parallel=wl.sequence_parallel_at(t)))
    return out


def _cp_ok(seq: int, heads: int | None, tp: int, cp: int, cp_comm: str) -> bool:
    if cp_comm == "ring":
        return seq % (2 * cp) == 0
    return seq % cp == 0 and (not heads or (heads // tp) % cp == 0)


def _memory_bound(spec: Any, wl: Any, trace: Any, model: Any, other: float):
    """A lower bound on a layout's per-device memory, in O(1): for the first stage and the biggest stage, the
    blocks' weights, gradients and optimizer states divided as TP, PP and ZeRO divide them, plus the activations
    its in-flight micro-batches save in those blocks (each at least at the end of its forward pass), at 1/(tp·cp)
    and micro-batch / traced batch of the traced ones. Embeddings, the head, temporaries and the timeline's own
    peak are left out, so it stays under the memory model's figure (2% of margin for rounding)."""
    from ..count.params import parameter_stats
    from ..memory.model import inflight_micro_batches
    from ..memory.timeline import ACT_CLASSES, C

    ref = model.per_device(Layout(precision=wl.precision, optimizer=wl.optimizer, micro_batch=1, recompute="full"))
    w, g, o = float(ref.weights_bytes), float(ref.gradients_bytes), float(ref.optimizer_bytes)
    stats = parameter_stats(trace)
    block_share = stats.non_embedding / stats.total if stats.total else 1.0
    prof = model.profile
    L = int(prof.n_blocks or 0)
    saved = {"none": 0.0, "selective": 0.0, "full": 0.0}  # bytes the blocks save per traced batch
    # of which in a dtype other than the compute dtype (fp32 under autocast): what 16-bit working weights may halve
    other_dtype = (C["act_shard_o"], C["act_repl_o"])
    saved_other = {"none": 0.0, "selective": 0.0, "full": 0.0}
    if L:
        blocks = prof.group_of_block_range(0, L, False, False)
        vec = prof.saved_vector(blocks)
        kept = prof.recompute_kept_vector(blocks)
        saved["none"] = sum(vec[k] for k in ACT_CLASSES)
        saved["selective"] = saved["none"] - vec[C["sq"]]
        saved["full"] = sum(kept[k] for k in ACT_CLASSES)
        saved_other["none"] = saved_other["selective"] = sum(vec[k] for k in other_dtype)
        saved_other["full"] = sum(kept[k] for k in other_dtype)
    traced_batch = float(model.traced_batch)
    # The reference states and the trace's activations are those of the workload's working weights on one device
    # (Workload.mixed_weights_at(0, 1)); a layout whose weights differ (16-bit under ZeRO-3 or a model split, or fp32
    # from a 16-bit trace) is bounded from below by the smaller of the two states per parameter (16-bit: half the
    # weights and gradients, 12 of the fp32 copy's 8 bytes of optimizer states) and, from an autocast trace, half
    # its activations that are not in the compute dtype (the fp32 residual stream autocast leaves)
    ref_weights = wl.mixed_weights_at(0, 1) if wl.mixed else None

    def bound(par: Layout) -> float:
        group = par.dp * par.cp
        lw, lg, lo, halved = w, g, o, 0.0
        if ref_weights is not None and wl.mixed_weights_at(par.zero, par.model_split) != ref_weights:
            if ref_weights == "fp32":
                lw, lg, lo, halved = w / 2, g / 2, o, saved_other[par.recompute] / 2
            else:
                lw, lg, lo = w, g, o * 8 / 12
        states = (lw / (group if par.zero >= 3 else 1) + lg / (group if par.zero >= 2 else 1)
                  + (lo / (group if par.zero >= 1 else 1) if par.offload == "none" else 0.0))
        states /= par.tp * max(par.ep, 1)
        per_mb = (saved[par.recompute] - halved) * par.micro_batch / (traced_batch * par.cp * par.tp)
        if par.pp == 1 or not L:
            worst = states + per_mb
        else:
            sizes = stage_layers(L, par.pp)
            m = max(1, wl.batch // (par.dp * par.micro_batch))
            worst = 0.0
            for k in {0, sizes.index(max(sizes))}:
                share = sizes[k] / L
                inflight = inflight_micro_batches(par.pp, par.vp, k, m)
                worst = max(worst, states * block_share * share + per_mb * share * inflight)
        return worst * 0.98 + other

    return bound


def plan(spec: Any, wl: Any, trace: Any, device: str | Device, devices: int, *, efficiency: Any = None,
         top: int = 10, tp: int | None = None, pp: int | None = None, zero: int | None = None,
         micro_batch: int | None = None, recompute: str | None = None, offload: str = "none",
         cp: int | None = None, vp: int | None = None, schedule: str | None = None, cp_comm: str = "ring",
         memory_check: Any = None, trace_at: Callable[[int, str], Any] | None = None) -> PlanResult:
    """Rank the layouts of ``devices`` devices for ``wl`` (a training workload traced at its global batch).

    ``memory_check(par) -> (peak_bytes, fits, estimate)`` replaces the memory model (tests, or callers
    with their own); it also turns the model-states bound off.

    ``trace_at(micro_batch, mixed_weights)``: a trace of one device's micro-batch of that many samples, with the
    working weights' dtype of the layout's ZeRO stage and model split (``Workload.mixed_weights_at``; the verbs trace it). With it,
    the layouts the memory model is asked about are sized from their own micro-batch's trace, and the first
    ``max(top, RETIMED)`` that fit are timed from it and ranked again: the global batch's trace, scaled down, also
    divides what a micro-batch does whatever its size (autocast's weight casts, a layer's gradient buffers, the
    reads of the norms' weights) by the number of micro-batches. Without it, every figure comes from the global
    trace, scaled.
    """
    t0 = time.perf_counter()
    if not wl.training:
        raise UserError("plan ranks training layouts; use --mode train (the default of plan)")
    if devices < 1:
        raise UserError(f"--devices must be a positive whole number, got {devices}")
    for name, v in (("--tp", tp), ("--pp", pp), ("--cp", cp)):
        if v is not None and devices % v:
            raise UserError(f"--devices {devices} is not divisible by {name} {v}")
    if recompute is not None and recompute not in RECOMPUTE_CHOICES:
        raise UserError(f"plan derives --recompute {', '.join(RECOMPUTE_CHOICES)} from one trace; --recompute "
                        f"{recompute} needs its own trace: give the layout to predict or memory instead")
    fixed = (tp or 1) * (pp or 1) * (cp or 1)
    if devices % fixed:
        raise UserError(f"--devices {devices} is not divisible by the fixed --tp × --pp × --cp = {fixed}")
    if wl.ep > 1 and not (getattr(spec, "facts", None) or {}).get("experts"):
        raise UserError(f"--ep {wl.ep} needs a mixture-of-experts model; {spec.name} has no experts (drop --ep)")
    # the fixed choices against the model, before the search: a --tp that does not divide the heads, a --vp too
    # deep for --pp's stages or an --ep that does not divide the experts get their own reason (every layout the
    # search made was refused, and the message said to use another device count)
    fixed_split = (tp or 1) * (pp or 1) * (cp or 1)
    if not devices % fixed_split:
        check_against_model(Layout(tp=tp or 1, pp=pp or 1, vp=(vp or 1) if pp else 1, cp=cp or 1, ep=wl.ep,
                                   dp=devices // fixed_split), getattr(spec, "facts", None) or {}, None, True)
    dev = resolve_device(device)
    eff = efficiency_for(dev, efficiency)
    profile = build_profile(trace, dev, eff, wl.precision, getattr(wl, "fusion", None))
    shape = model_shape(spec, wl, trace)
    layouts = enumerate_layouts(spec, wl, devices, dev, tp=tp, pp=pp, zero=zero, micro_batch=micro_batch,
                                recompute=recompute, ep=wl.ep, shape=shape, offload=offload, cp=cp, vp=vp,
                                schedule=schedule, cp_comm=cp_comm, cp_min_seq=eff["plan_cp_min_seq"])
    fused_only = profile.attention_forward.ops == 0
    if fused_only and recompute is None:  # nothing for selective recomputation to drop or redo
        layouts = [p for p in layouts if p.recompute != "selective"]
    if not layouts:
        raise UserError(f"no layout of {devices} devices divides the global batch {wl.batch} into whole data-parallel "
                        f"replicas and micro-batches; use a --batch that is a multiple of {devices * (micro_batch or 1)}"
                        + (f" (the devices × --micro-batch {micro_batch})" if micro_batch and micro_batch > 1 else ""))
    enumerated = len(layouts)
    capacity = float(device_capacity(wl, dev))
    mem_model = None
    if memory_check is None:
        mem_model = memory_model(spec, wl, trace)
        bound = _memory_bound(spec, wl, trace, mem_model, float(mem_model._default_other()))
        kept = [p for p in layouts if bound(p) <= capacity]
        pruned = enumerated - len(kept)
        layouts = kept or layouts  # when nothing passes, the memory model says how far the smallest is
    else:
        pruned = 0
    model, recompute_flops = _flops(trace)  # of the global batch: one step
    tokens = trace.tokens * shape.scale
    peak = profile.peak_flops

    def candidate(par: Layout, prof: Any, shp: Any) -> Candidate:
        st = step_time(prof, shp, par, dev, eff)
        hw = model + recompute_flops + st.hardware_extra_flops
        return Candidate(par, st, tokens / st.step_s, model / (st.step_s * devices * peak),
                         hw / (st.step_s * devices * peak))

    cands: list[Candidate] = []
    for par in layouts:
        try:
            cands.append(candidate(par, profile, shape))
        except UserError:
            continue
    if not cands:
        step_time(profile, shape, layouts[0], dev, eff)  # raises the layout's own one-line reason
    order = {r: i for i, r in enumerate(RECOMPUTE_CHOICES)}

    def rank(c: Candidate) -> tuple:
        return (-c.tokens_per_s, c.par.model_split, c.par.vp, c.par.zero, order[c.par.recompute],
                c.par.zeropp, c.par.micro_batch)

    cands.sort(key=rank)
    scaled_check = memory_check or _memory_checker(spec, wl, trace, dev, mem_model)
    # (micro-batch, working weights' dtype) → (profile, shape, memory check) of that micro-batch's own trace
    own: dict[tuple[int, str], tuple[Any, Any, Any]] = {}

    traced_key = (trace.memory.batch or wl.batch, wl.mixed_weights_resolved)  # what the global trace already is

    def at_micro_batch(par: Layout) -> tuple[Any, Any, Any]:
        mb, weights = par.micro_batch, wl.mixed_weights_at(par.zero, par.model_split)
        if (mb, weights) not in own:
            t = trace_at(mb, weights) if trace_at is not None and (mb, weights) != traced_key else None
            if t is None:
                own[mb, weights] = (profile, shape, scaled_check)
            else:
                micro_wl = wl.with_changes(given=wl.given, batch=mb, micro_batch=None, mixed_weights=weights)
                own[mb, weights] = (build_profile(t, dev, eff, wl.precision, getattr(wl, "fusion", None)),
                                    model_shape(spec, micro_wl, t, wl.batch),
                                    memory_check or _memory_checker(spec, wl, t, dev, memory_model(spec, micro_wl, t)))
        return own[mb, weights]

    def check(par: Layout) -> tuple[float, bool, Any]:
        return at_micro_batch(par)[2](par)
    # The most frugal layout of each (tp, cp, pp, dp) group — smallest micro-batch, highest ZeRO stage, full
    # recomputation, fewest virtual stages: memory does not grow when a layout saves more, so if none of these
    # fits, none fits.
    frugal: dict[tuple[int, int, int, int], Candidate] = {}
    for c in cands:
        key = (c.par.tp, c.par.cp, c.par.pp, c.par.dp)
        cur = frugal.get(key)
        if cur is None or _thrift(c.par) < _thrift(cur.par):
            frugal[key] = c
    checked = 0

    def ask(c: Candidate) -> None:
        nonlocal checked
        if c.fits is None:
            c.peak_bytes, c.fits, c.memory = check(c.par)
            checked += 1

    fitting: list[Candidate] = []
    # with micro-batch traces, the same number of layouts is re-timed whatever --top shows (so a shorter table is
    # the first rows of a longer one, and analyze's layout is plan's first row)
    wanted = max(top, RETIMED) if trace_at is not None else top
    prefetch = getattr(trace_at, "prefetch", None)
    if prefetch is not None:  # the micro-batch traces the walk below will likely ask for, traced side by side
        prefetch(_likely_traces(cands[:PREFETCH_LOOKAHEAD], scaled_check, wanted, wl, traced_key))
    with phase(f"checking the memory of {len(cands)} layouts, fastest first"):
        for i, c in enumerate(cands):
            if i == len(frugal) and not fitting:  # nothing fits yet: can anything?
                for f in frugal.values():
                    ask(f)
                if not any(f.fits for f in frugal.values()):
                    break
            ask(c)
            if c.fits:
                fitting.append(c)
                if len(fitting) >= wanted:
                    break
    if not fitting:
        for f in frugal.values():
            ask(f)
        smallest = min(frugal.values(), key=lambda c: c.peak_bytes)
        if math.isinf(smallest.peak_bytes):
            raise UserError(f"no layout of {spec.name} on {devices} × {dev.id} is possible: the memory model refuses "
                            f"all {len(cands)} (e.g. {smallest.par.label()}); use another device count")
        raise NoLayoutFits(
            f"no layout of {spec.name} fits on {devices} × {dev.id} ({capacity / 2**30:.1f} GiB each): the "
            f"most frugal one ({smallest.par.label()}) still needs {smallest.peak_bytes / 2**30:.1f} GiB per device — "
            f"use more devices, a device with more memory, LoRA, or quantization")
    if trace_at is not None:  # time the layouts shown from their own micro-batch's trace, and rank them again
        for i, c in enumerate(fitting):
            prof, shp, _ = at_micro_batch(c.par)
            if prof is not profile:
                timed = candidate(c.par, prof, shp)
                timed.peak_bytes, timed.fits, timed.memory = c.peak_bytes, c.fits, c.memory
                fitting[i] = timed
        fitting.sort(key=rank)
        fitting = fitting[:top]
    best = fitting[0]
    for c in fitting:
        c.weights = wl.mixed_weights_at(c.par.zero, c.par.model_split) if wl.mixed else None
    for c in fitting[1:]:
        c.why = why_slower(c, best)
        if c.weights != best.weights and c.weights:
            c.why += f" ({c.weights} working weights)"  # what the ZeRO stage or split brings with it
    explanation = explain(best, dev, devices, capacity, "samples" if trace.token_unit == "samples" else "tokens")
    notes = [f"global batch {wl.batch} {'sequences' if shape.tokens_per_sample else 'samples'} "
             f"({trace.tokens:,} tokens per step)",
             f"{enumerated:,} layouts enumerated; {pruned:,} pruned by a lower bound on their memory (the biggest "
             f"stage's model states and the activations its in-flight micro-batches save); {len(cands):,} ranked by predicted step time; the full memory model asked for "
             f"{checked}, in rank order (and the most frugal of each tp × cp × pp × dp group when the first ones do "
             f"not fit); the {len(fitting)} shown fit",
             "constraints: tp divides the heads and the devices per node (a group stays within a node); pp up to the layers, stages uneven when pp "
             "does not divide them (the smaller stages at the ends); vp chunks per stage, each with a block (an end "
             "chunk may hold the embedding or the head alone); cp divides the sequence into "
             f"2·cp chunks (ring attention), tried from {eff['plan_cp_min_seq']:g} tokens; ZeRO 2/3 only without "
             "pipeline parallelism; ZeRO++ tried with ZeRO 3 when the data-parallel group spans nodes; offload not "
             f"enumerated ({offload if offload != 'none' else 'none'}, as given)"]
    traced = sorted(key for key, (prof, _, _) in own.items() if prof is not profile)
    if traced:
        by_weights: dict[str, list[str]] = {}
        for mb, w in traced:
            by_weights.setdefault(w, []).append(str(mb))
        which = "; ".join(f"{', '.join(mbs)} sample(s)" + (f" with {w} weights" if wl.mixed else "")
                          for w, mbs in by_weights.items())
        notes.append(f"the layouts asked about were sized, and the (up to) {max(top, RETIMED)} fastest that fit timed "
                     "and ranked again, "
                     f"from a trace of one device's micro-batch ({which}); the ranking that chose them scaled the "
                     "global batch's trace")
    if fused_only and recompute is None:
        notes.append("selective recomputation left out: with fused (SDPA/flash) attention it keeps and redoes "
                     "the same as no recomputation")
    return PlanResult(fitting, len(cands), checked, dev, devices, wl.batch, explanation, time.perf_counter() - t0, notes)


_LOSS_PARTS = (("bubble", "bubble"), ("recompute", "recompute"), ("dp", "exposed DP traffic"),
               ("tp", "exposed TP traffic"), ("cp", "exposed CP exchange"), ("pp", "pipeline sends"),
               ("ep", "expert all-to-all"), ("offload", "offload transfers"), ("work", "work"),
               ("optimizer", "optimizer step"))


def _parts(st: StepTime) -> dict[str, float]:
    """A step split into what layouts trade against each other (sums to the step time)."""
    b, c, ph = st.breakdown, st.communication, st.phases
    out = {
        "bubble": b.get("bubble_s", 0.0),
        "recompute": ph.get("recompute_s", 0.0),
        "dp": c.get("dp_exposed_s", 0.0), "tp": c.get("tp_exposed_s", 0.0), "cp": c.get("cp_exposed_s", 0.0),
        "pp": c.get("pp_exposed_s", 0.0), "ep": c.get("ep_exposed_s", 0.0), "offload": c.get("offload_s", 0.0),
        "optimizer": ph.get("optimizer_s", 0.0),
    }
    # the rest: the slowest stage's forward and backward with their per-op overhead and the weight-streaming floor
    out["work"] = st.step_s - sum(out.values())
    return out


def why_slower(c: Candidate, best: Candidate) -> str:
    """What makes ``c`` slower than ``best``: its step time over #1's, then the one or two parts of the step that
    grew most, each as a share of #1's step time ("+4.1% step: +18% bubble, +3% exposed DP traffic"; other parts
    may have shrunk)."""
    mine, theirs = _parts(c.st), _parts(best.st)
    base = best.st.step_s
    grew = sorted(((mine[k] - theirs[k]) / base, label) for k, label in _LOSS_PARTS if k in mine)
    grew = [(d, label) for d, label in reversed(grew) if d >= 0.005]
    if not grew:
        return f"+{(c.st.step_s - base) / base:.1%} step (small parts)" if c.st.step_s > base * 1.0005 else "ties"
    net = (c.st.step_s - base) / base
    return f"+{net:.1%} step: " + ", ".join(f"+{d:.0%} {label}" for d, label in grew[:2])


def _likely_traces(cands: list[Candidate], scaled_check: Any, wanted: int, wl: Any, traced_key: tuple[int, str]
                   ) -> list[tuple[int, str]]:
    """The (micro-batch, working weights) of the first ``wanted`` candidates, and of the first ``wanted`` the global
    trace says fit: the traces the memory walk will most likely ask ``trace_at`` for (a guess: the exact check
    decides, and the global trace's weights may not be a layout's)."""
    keys: list[tuple[int, str]] = []
    found = 0
    for i, c in enumerate(cands):
        fits = scaled_check(c.par)[1]
        if i < wanted or fits:
            key = (c.par.micro_batch, wl.mixed_weights_at(c.par.zero, c.par.model_split))
            if key != traced_key and key not in keys:
                keys.append(key)
        found += bool(fits)
        if found >= wanted and i >= wanted:
            break
    return keys


def _thrift(par: Layout) -> tuple:
    """Sort key: the layout that saves the most memory first."""
    return (par.micro_batch, -par.zero, -RECOMPUTE_CHOICES.index(par.recompute), par.vp, par.zeropp)


def explain(c: Candidate, dev: Device, devices: int, capacity: float | None = None, unit: str = "tokens") -> str:
    st = c.st
    total = st.step_s
    parts = sorted(st.breakdown.items(), key=lambda kv: -kv[1])
    names = {"compute_s": "compute-bound operators", "memory_s": "memory-bound operators",
             "overhead_s": "per-op overhead", "communication_s": "exposed communication", "bubble_s": "pipeline bubble"}
    shares = ", ".join(f"{names[k]} {v / total:.0%}" for k, v in parts if v / total >= 0.005)
    comm = st.communication
    detail = []
    for key, label in (("tp_exposed_s", "tensor-parallel all-reduces"), ("dp_exposed_s", "data-parallel gradient sync"),
                       ("pp_exposed_s", "pipeline sends"), ("ep_exposed_s", "expert all-to-all"),
                       ("cp_exposed_s", "context-parallel exchange")):
        if comm.get(key, 0) / total >= 0.005:
            detail.append(f"{label} {comm[key] / total:.0%}")
    mem = ""
    if c.peak_bytes is not None:
        mem = f"; peak memory {c.peak_bytes / 2**30:.1f} GiB of {(capacity or dev.memory_bytes) / 2**30:.1f} GiB per device"
    return (f"best: {c.par.label()} — {c.tokens_per_s:,.0f} {unit}/s, MFU {c.mfu:.1%}; bottleneck: {st.bottleneck} "
            f"({shares}{'; communication: ' + ', '.join(detail) if detail else ''}){mem}")
