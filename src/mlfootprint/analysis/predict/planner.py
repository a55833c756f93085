"""The planner: parallel layouts for N devices, kept when they fit in memory, ranked by predicted throughput.

Enumerates tensor (TP) × pipeline (PP) × data (DP) parallel degrees with a ZeRO
stage, a micro-batch size and a recomputation choice for one global batch.
Each layout's step time comes from one roofline profile of one trace (O(1) per
layout); whether it fits comes from the memory model
(``memory_model(spec, wl, trace).per_device(layout)``), asked in rank order only
until enough fitting layouts are found — except when none fits, when every
layout is checked to say how far the smallest one is from fitting.

Constraints: TP divides the attention heads and stays inside a node; PP divides
the layers; DP divides the global batch; ZeRO 2/3 only without pipeline
parallelism (as in DeepSpeed); ZeRO++ is tried with ZeRO 3 when the
data-parallel group spans nodes. Offload is not enumerated.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import UserError
from ...core.progress import phase
from ...hardware.catalog import Device
from .efficiency import efficiency_for
from .roofline import build_profile
from .shape import model_shape
from .step import StepTime, step_time
from ...workload import Layout
from ..memory.model import memory_model
from .prediction import _flops, resolve_device

RECOMPUTE_CHOICES = ("none", "selective", "full")
MICRO_BATCHES = (1, 2, 4, 8, 16, 32)


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

    def to_dict(self) -> dict[str, Any]:
        p = self.par
        d = {"tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep, "zero": p.zero, "zeropp": p.zeropp,
             "micro_batch": p.micro_batch, "micro_batches": self.st.micro_batches, "recompute": p.recompute,
             "step_s": self.st.step_s, "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "hfu": self.hfu,
             "peak_bytes": self.peak_bytes, "fits": self.fits, "bottleneck": self.st.bottleneck,
             "breakdown": dict(self.st.breakdown)}
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


def _memory_checker(spec: Any, wl: Any, trace: Any, device: Device):
    model = memory_model(spec, wl, trace)
    capacity = int(device.memory_bytes)

    def check(par: Layout) -> tuple[float, bool, Any]:
        m = max(1, wl.batch // (par.dp * par.micro_batch))
        layout = par.replace(precision=wl.precision, optimizer=wl.optimizer, grad_accum=m, sequence_parallel=par.tp > 1)
        try:
            est = model.per_device(layout).with_device(capacity, "published")
        except UserError:  # a layout the memory model refuses for this model
            return math.inf, False, None
        return float(est.peak_bytes), bool(est.fits), est

    return check


def enumerate_layouts(spec: Any, wl: Any, devices: int, device: Device, *, tp: int | None = None,
                      pp: int | None = None, zero: int | None = None, micro_batch: int | None = None,
                      recompute: str | None = None, ep: int = 1, shape: Any = None,
                      offload: str = "none") -> list[Layout]:
    facts = spec.facts or {}
    heads = facts.get("heads")
    layers = facts.get("layers")
    dpn = int(device.devices_per_node or 1)
    transformer = bool(layers and facts.get("hidden") and shape is not None and shape.tokens_per_sample)
    tps = [tp] if tp else [d for d in _divisors(devices) if d <= dpn and (not heads or heads % d == 0)]
    if not transformer and not tp:
        tps = [1]
    out: list[Layout] = []
    B = wl.batch
    for t in tps:
        if devices % t:
            continue
        rest = devices // t
        pps = [pp] if pp else [d for d in _divisors(rest) if (not layers or (d <= layers and layers % d == 0))]
        if not transformer and not pp:
            pps = [1]
        for p in pps:
            if rest % p:
                continue
            dp = rest // p
            if B % dp or (ep > 1 and dp % ep):
                continue
            per_replica = B // dp
            zeros = [zero] if zero is not None else ([0, 1] if p > 1 else [0, 1, 2, 3])
            if dp == 1 and zero is None:
                zeros = [0]
            if offload != "none" and zero is None:  # ZeRO-Offload moves the partitioned optimizer states
                zeros = [1] if p > 1 else [1, 2, 3]
            mbs = [micro_batch] if micro_batch else [b for b in MICRO_BATCHES if per_replica % b == 0]
            if not mbs:
                continue
            rcs = [recompute] if recompute else list(RECOMPUTE_CHOICES)
            for z in zeros:
                variants = [False, True] if (z == 3 and t * dp > dpn) else [False]
                for zpp in variants:
                    for b in mbs:
                        for rc in rcs:
                            out.append(Layout(dp=dp, tp=t, pp=p, ep=ep, zero=z, micro_batch=b, recompute=rc,
                                                zeropp=zpp, offload=offload))
    return out


def plan(spec: Any, wl: Any, trace: Any, device: str | Device, devices: int, *, efficiency: Any = None,
         top: int = 10, tp: int | None = None, pp: int | None = None, zero: int | None = None,
         micro_batch: int | None = None, recompute: str | None = None, offload: str = "none",
         memory_check: Any = None) -> PlanResult:
    """Rank the layouts of ``devices`` devices for ``wl`` (a training workload traced at its global batch).

    ``memory_check(par) -> (peak_bytes, fits, estimate)`` replaces the memory model (tests, or callers
    with their own).
    """
    t0 = time.perf_counter()
    if not wl.training:
        raise UserError("plan ranks training layouts; use --mode train (the default of plan)")
    if devices < 1:
        raise UserError(f"--devices must be a positive whole number, got {devices}")
    for name, v in (("--tp", tp), ("--pp", pp)):
        if v is not None and devices % v:
            raise UserError(f"--devices {devices} is not divisible by {name} {v}")
    if tp and pp and devices % (tp * pp):
        raise UserError(f"--devices {devices} is not divisible by --tp {tp} × --pp {pp} = {tp * pp}")
    dev = resolve_device(device)
    eff = efficiency_for(dev, efficiency)
    profile = build_profile(trace, dev, eff, wl.precision, getattr(wl, "fusion", None))
    shape = model_shape(spec, wl, trace)
    layouts = enumerate_layouts(spec, wl, devices, dev, tp=tp, pp=pp, zero=zero, micro_batch=micro_batch,
                                recompute=recompute, ep=wl.ep, shape=shape, offload=offload)
    fused_only = profile.attention_forward.ops == 0
    if fused_only and recompute is None:  # nothing for selective recomputation to drop or redo
        layouts = [p for p in layouts if p.recompute != "selective"]
    if not layouts:
        raise UserError(f"no layout of {devices} devices divides the global batch {wl.batch} into whole data-parallel "
                        f"replicas and micro-batches; use a --batch that is a multiple of {devices}")
    model, recompute_flops = _flops(trace)
    peak = profile.peak_flops
    cands: list[Candidate] = []
    for par in layouts:
        st = step_time(profile, shape, par, dev, eff)
        hw = model + recompute_flops + st.hardware_extra_flops
        cands.append(Candidate(par, st, trace.tokens * st.scale / st.step_s, model / (st.step_s * devices * peak),
                               hw / (st.step_s * devices * peak)))
    order = {r: i for i, r in enumerate(RECOMPUTE_CHOICES)}
    cands.sort(key=lambda c: (-c.tokens_per_s, c.par.tp * c.par.pp, c.par.zero, order[c.par.recompute],
                              c.par.zeropp, c.par.micro_batch))
    check = memory_check or _memory_checker(spec, wl, trace, dev)
    # The most frugal layout of each (tp, pp, dp) group — smallest micro-batch, highest ZeRO stage, full
    # recomputation: memory does not grow when a layout saves more, so if none of these fits, none fits.
    frugal: dict[tuple[int, int, int], Candidate] = {}
    for c in cands:
        key = (c.par.tp, c.par.pp, c.par.dp)
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
                if len(fitting) >= top:
                    break
    if not fitting:
        for f in frugal.values():
            ask(f)
        smallest = min(frugal.values(), key=lambda c: c.peak_bytes)
        if math.isinf(smallest.peak_bytes):
            raise UserError(f"no layout of {spec.name} on {devices} × {dev.id} is possible: the memory model refuses "
                            f"all {len(cands)} (e.g. {smallest.par.label()}); use another device count")
        raise UserError(
            f"no layout of {spec.name} fits on {devices} × {dev.id} ({dev.memory_bytes / 2**30:.1f} GiB each): the "
            f"most frugal one ({smallest.par.label()}) still needs {smallest.peak_bytes / 2**30:.1f} GiB per device — "
            f"use more devices, a device with more memory, LoRA, or quantization")
    best = fitting[0]
    explanation = explain(best, dev, devices)
    notes = [f"global batch {wl.batch} {'sequences' if shape.tokens_per_sample else 'samples'} "
             f"({trace.tokens:,} tokens per step)",
             f"{len(cands)} layouts considered; memory checked for {checked}, in rank order (and the most frugal of "
             f"each tp × pp × dp group when the first ones do not fit); the {len(fitting)} shown fit the "
             "memory model",
             "constraints: tp divides the heads and stays within a node; pp divides the layers; ZeRO 2/3 only "
             "without pipeline parallelism; ZeRO++ tried with ZeRO 3 when the data-parallel group spans nodes; "
             f"offload not enumerated ({offload if offload != 'none' else 'none'}, as given)"]
    if fused_only and recompute is None:
        notes.append("selective recomputation left out: with fused (SDPA/flash) attention it keeps and redoes "
                     "the same as no recomputation")
    return PlanResult(fitting, len(cands), checked, dev, devices, wl.batch, explanation, time.perf_counter() - t0, notes)


def _thrift(par: Layout) -> tuple:
    """Sort key: the layout that saves the most memory first."""
    return (par.micro_batch, -par.zero, -RECOMPUTE_CHOICES.index(par.recompute), par.zeropp)


def explain(c: Candidate, dev: Device, devices: int) -> str:
    st = c.st
    total = st.step_s
    parts = sorted(st.breakdown.items(), key=lambda kv: -kv[1])
    names = {"compute_s": "compute-bound operators", "memory_s": "memory-bound operators",
             "overhead_s": "per-op overhead", "communication_s": "exposed communication", "bubble_s": "pipeline bubble"}
    shares = ", ".join(f"{names[k]} {v / total:.0%}" for k, v in parts if v / total >= 0.005)
    comm = st.communication
    detail = []
    for key, label in (("tp_exposed_s", "tensor-parallel all-reduces"), ("dp_exposed_s", "data-parallel gradient sync"),
                       ("pp_exposed_s", "pipeline sends"), ("ep_exposed_s", "expert all-to-all")):
        if comm.get(key, 0) / total >= 0.005:
            detail.append(f"{label} {comm[key] / total:.0%}")
    mem = ""
    if c.peak_bytes is not None:
        mem = f"; peak memory {c.peak_bytes / 2**30:.1f} GiB of {dev.memory_bytes / 2**30:.1f} GiB per device"
    return (f"best: {c.par.label()} — {c.tokens_per_s:,.0f} tokens/s, MFU {c.mfu:.1%}; bottleneck: {st.bottleneck} "
            f"({shares}{'; communication: ' + ', '.join(detail) if detail else ''}){mem}")
