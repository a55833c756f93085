"""Roofline time of each traced operator, summed into a profile of the step.

For each op record:
  compute time = model FLOPs / (peak of the op's dtype × class factor)
               + other FLOPs / (vector peak × vector factor)
  memory time  = (bytes read + bytes written) / (memory bandwidth × bandwidth factor)
  time         = max(compute, memory), plus a per-op overhead charged separately.
Op classes: attention (attention products), conv (convolutions), matmul (the
rest of the matrix-class work), vector (elementwise / norm / softmax /
reduction only). The profile keeps the sums per phase, so a parallel layout can
be evaluated without re-tracing (see ``step.py``).

Two refinements follow the target stack:
- kernel fusion (``fusion.py``): the records are first grouped into the kernels
  the stack launches (eager, fused-kernel or compiled), and each kernel is one
  roofline term with its own memory traffic and one per-op overhead;
- GEMM efficiency by size (``gemm.py``): 16-bit matmuls on a GPU are rated at
  peak × efficiency(FLOPs per call), the call's size being the traced one scaled
  to the layout's micro-batch and tensor-parallel shard. They are kept in bins of
  (size, arithmetic intensity) so that each layout re-rates them in O(bins).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import UserError
from ...core.precision import DTYPE_BYTES, precision as precision_of
from ...hardware.catalog import dtype_for_precision
from .efficiency import Efficiency
from . import host
from .attention_rate import AttentionRate, attention_rate
from .fusion import FusionSummary, check_fusion, default_fusion, fuse, optimizer_kernels
from .kernel_rates import batch_norm_seconds, conv_seconds, source as kernels_source
from .gemm import FP8_FAST_PHASES, GemmCurve, fp8_gemm_curve, gemm_curve, unaligned_gemm_curve
from .opcurves import BYTE_KINDS, COMPUTE_KINDS, Curve, kernel_kind
from ...trace.records import fused_attention_op

CLASSES = ("matmul", "attention", "conv", "vector", "movement")

_TORCH_DTYPES = {
    "float32": "fp32", "float": "fp32", "float64": "fp64", "double": "fp64", "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8", "float8_e5m2fnuz": "fp8", "int8": "int8", "uint8": "int8",
}
_BLOCK_RE = re.compile(r"(^|\.)\d+(\.|$)")


@dataclass
class PhaseProfile:
    compute_s: float = 0.0  # summed roofline time of ops limited by arithmetic
    memory_s: float = 0.0  # summed roofline time of ops limited by memory traffic
    ops: int = 0
    model_flops: int = 0
    other_flops: int = 0
    bytes: int = 0
    by_class: dict[str, float] = field(default_factory=dict)
    host_s: float = 0.0  # eager host time to dispatch the phase once (host.py; 0: not modelled), not scaled
    # the part of the sums above that tensor parallelism leaves whole on every rank without sequence parallelism
    # (norms, the dropouts after row-parallel linears, the residual stream: memory/timeline.tp_replicated), by class
    replicated: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def time_s(self) -> float:
        return self.compute_s + self.memory_s

    def add(self, cls: str, tc: float, tm: float, r: Any, replicated: bool = False) -> None:
        self.add_totals(cls, tc, tm, 1, r.model_flops, r.other_flops, r.bytes_read + r.bytes_written)
        if replicated:
            c, m = self.replicated.get(cls, (0.0, 0.0))
            self.replicated[cls] = (c + (tc if tc >= tm and tc > 0 else 0.0), m + (0.0 if tc >= tm and tc > 0 else tm))

    def add_totals(self, cls: str, tc: float, tm: float, ops: int, model_flops: int, other_flops: int,
                   nbytes: int) -> None:
        t = max(tc, tm)
        if tc >= tm and tc > 0:
            self.compute_s += t
        else:
            self.memory_s += t
        self.ops += ops
        self.model_flops += model_flops
        self.other_flops += other_flops
        self.bytes += nbytes
        self.by_class[cls] = self.by_class.get(cls, 0.0) + t

    def scaled(self, k: float) -> PhaseProfile:
        return PhaseProfile(self.compute_s * k, self.memory_s * k, self.ops, int(self.model_flops * k),
                            int(self.other_flops * k), int(self.bytes * k),
                            {c: v * k for c, v in self.by_class.items()}, self.host_s,
                            {c: (tc * k, tm * k) for c, (tc, tm) in self.replicated.items()})

    def plus(self, other: PhaseProfile) -> PhaseProfile:
        out = PhaseProfile(self.compute_s + other.compute_s, self.memory_s + other.memory_s, self.ops + other.ops,
                           self.model_flops + other.model_flops, self.other_flops + other.other_flops,
                           self.bytes + other.bytes, dict(self.by_class), self.host_s + other.host_s,
                           dict(self.replicated))
        for c, v in other.by_class.items():
            out.by_class[c] = out.by_class.get(c, 0.0) + v
        for c, (tc, tm) in other.replicated.items():
            a, b = out.replicated.get(c, (0.0, 0.0))
            out.replicated[c] = (a + tc, b + tm)
        return out

    def with_class_slower(self, cls: str, factor: float) -> PhaseProfile:
        """The sums with class ``cls``'s time × ``factor`` (≥ 1), the extra as compute."""
        extra = self.by_class.get(cls, 0.0) * (factor - 1.0)
        if extra <= 0:
            return self
        out = self.plus(PhaseProfile())
        out.compute_s += extra
        out.by_class[cls] = out.by_class.get(cls, 0.0) + extra
        return out

    def unsharded(self, tp: int) -> PhaseProfile:
        """The sums with the replicated part run whole on each of ``tp`` tensor-parallel ranks, as without sequence
        parallelism (the sums, like every traced operator's, were split over tp): its time × tp."""
        if tp <= 1 or not self.replicated:
            return self
        out = self.plus(PhaseProfile())
        for c, (tc, tm) in self.replicated.items():
            out.compute_s += (tp - 1) * tc
            out.memory_s += (tp - 1) * tm
            out.by_class[c] = out.by_class.get(c, 0.0) + (tp - 1) * (tc + tm)
            out.replicated[c] = (tp * tc, tp * tm)
        return out


@dataclass
class GemmBin:
    """16-bit matmuls of one phase with about the same size and arithmetic intensity (a quarter octave of each)."""

    calls: int = 0
    model_flops: int = 0
    other_flops: int = 0
    bytes: int = 0
    peak: float = 0.0  # dense peak of their dtype
    memory_s: float = 0.0  # their traffic / bandwidth, summed
    other_s: float = 0.0  # their elementwise arithmetic (a bias) / vector rate, summed
    curve: GemmCurve | None = None  # the table of their dtype (FP8 GEMMs have their own); None: the profile's

    def times(self, curve: GemmCurve, gemm_scale: float) -> tuple[float, float]:
        flops_per_call = self.model_flops / self.calls * gemm_scale
        return self.model_flops / (self.peak * (self.curve or curve)(flops_per_call)) + self.other_s, self.memory_s


BLOCK_FORWARD = "block_forward"  # the key of the blocks' forward GEMMs in Profile.gemm_bins
# the keys of the blocks' column-parallel linears' backward GEMMs in Profile.gemm_bins: this + "group/kind"
COLUMN_BACKWARD = "column_backward:"
GRADIENT_GEMMS = ("dgrad", "wgrad")  # a linear's backward: the input gradient, then the weight gradient


@dataclass
class Profile:
    """Roofline sums of one traced step on one device, before any parallel layout is applied.

    ``phases`` and ``block_forward`` hold every kernel but the 16-bit GEMMs that a size table rates
    (``gemm_bins``); :meth:`phase` and :meth:`block` add those at a layout's GEMM size."""

    phases: dict[str, PhaseProfile]
    block_forward: PhaseProfile  # forward ops inside repeated blocks (what full recomputation re-runs)
    attention_forward: PhaseProfile  # unfused attention's forward core (what selective recomputation re-runs)
    fused_recompute_flops: int  # FLOPs fused attention kernels recompute in backward (HFU only)
    per_op_overhead_s: float
    peak_flops: float  # dense peak of the workload's dtype (the MFU denominator)
    peak_dtype: str
    rates: dict[str, float]  # achievable rates used: class → FLOP/s, 'memory' → B/s
    fallbacks: list[str]
    overhead_source: str
    fusion: FusionSummary = field(default_factory=lambda: FusionSummary("none", "not modelled"))
    gemm: GemmCurve | None = None  # the size table 16-bit GEMMs are rated by (None: the flat matmul factor)
    gemm_bins: dict[str, dict[tuple, GemmBin]] = field(default_factory=dict)
    attention: AttentionRate | None = None  # the class rate 16-bit fused attention was timed at (None: the factor)
    # the backward GEMMs of the blocks' column-parallel linears, by the group Megatron-LM fuses into one linear
    # (memory/timeline.tp_readings: attention, mlp) and kind, keyed "group/dgrad" and "group/wgrad": a subset of the
    # backward phase
    column_backward: dict[str, PhaseProfile] = field(default_factory=dict)
    host_modelled: bool = False  # phases carry the eager host time (host.py): the step waits on the slower side
    host_scale: float = 1.0  # this host's dispatch time against the reference host's (hardware calibrate)
    _at: dict[tuple[str, float], PhaseProfile] = field(default_factory=dict, repr=False)
    _column_at: dict[float, dict[str, dict[str, float]]] = field(default_factory=dict, repr=False)

    def phase(self, name: str, gemm_scale: float = 1.0) -> PhaseProfile:
        """The phase's sums with its GEMMs at ``gemm_scale`` × their traced FLOPs per call."""
        return self._with_gemms(name, self.phases.get(name) or PhaseProfile(), gemm_scale)

    def block(self, gemm_scale: float = 1.0) -> PhaseProfile:
        """The repeated blocks' forward (what full recomputation re-runs), GEMMs at ``gemm_scale``."""
        return self._with_gemms(BLOCK_FORWARD, self.block_forward, gemm_scale)

    def column_backward_at(self, gemm_scale: float = 1.0) -> dict[str, PhaseProfile]:
        """The backward GEMMs of the blocks' column-parallel linears by "group/kind", GEMMs at ``gemm_scale``."""
        return {g: self._with_gemms(COLUMN_BACKWARD + g, base, gemm_scale)
                for g, base in sorted(self.column_backward.items())}

    def column_backward_s(self, gemm_scale: float = 1.0) -> dict[str, dict[str, float]]:
        """Their time by group, then kind: {"attention": {"dgrad": s, "wgrad": s}, ...} (:meth:`column_backward_at`);
        the planner asks once per layout, so kept per GEMM scale. Read-only."""
        out = self._column_at.get(gemm_scale)
        if out is None:
            out = {}
            for key, p in self.column_backward_at(gemm_scale).items():
                group, _, kind = key.partition("/")
                out.setdefault(group, dict.fromkeys(GRADIENT_GEMMS, 0.0))[kind] = p.time_s
            self._column_at[gemm_scale] = out
        return out

    def gemm_efficiency(self, gemm_scale: float = 1.0) -> float | None:
        """FLOP-weighted mean efficiency of the table-rated GEMMs of one step at ``gemm_scale`` (None: no table)."""
        if self.gemm is None:
            return None
        flops = ideal = 0.0
        for name, bins in self.gemm_bins.items():
            if name == BLOCK_FORWARD or name.startswith(COLUMN_BACKWARD):
                continue
            for b in bins.values():
                flops += b.model_flops
                ideal += b.model_flops / (b.curve or self.gemm)(b.model_flops / b.calls * gemm_scale)
        return flops / ideal if ideal else None

    def _with_gemms(self, name: str, base: PhaseProfile, gemm_scale: float) -> PhaseProfile:
        bins = self.gemm_bins.get(name)
        if not bins or self.gemm is None:
            return base
        key = (name, gemm_scale)
        cached = self._at.get(key)
        if cached is None:
            cached = base.plus(PhaseProfile())
            for b in bins.values():
                tc, tm = b.times(self.gemm, gemm_scale)
                cached.add_totals("matmul", tc, tm, b.calls, b.model_flops, b.other_flops, b.bytes)
            self._at[key] = cached
        return cached


def _op_dtype(out_dtype: str) -> str | None:
    return _TORCH_DTYPES.get(out_dtype.replace("torch.", "")) if out_dtype else None


def _fused_attention(op: str) -> bool:
    """SDPA / flash kernels keep no T×T tensors, so selective recomputation has nothing to redo."""
    return fused_attention_op(op)


# A fused attention kernel told is_causal (FlashAttention, memory-efficient, cuDNN, PyTorch's CPU flash) skips the
# score tiles above the diagonal: about half the L×S square (Dao 2023, FlashAttention-2, arXiv:2307.08691, §3.1.1).
# FlashAttention's TFLOP/s figures, the source of the attention factor, count that half for causal runs (§4.1), so
# its time is the causal-halved FLOPs at that rate. The counted FLOPs stay the full square (DESIGN.md).
CAUSAL_TILE_SHARE = 0.5


def compute_share(r: Any, fusion: str = "none") -> float:
    """Share of an operator's counted arithmetic its kernel runs: CAUSAL_TILE_SHARE for a fused causal attention
    kernel, 1 otherwise (an unfused causal attention multiplies the whole square, then masks it). On the fused
    stack a fused attention masked to a causal sliding window runs the tiles inside the window only (Transformer
    Engine's FlashAttention with window_size; the trace's share of the square inside it); elsewhere the kernel
    transformers' SDPA path picks for a mask (memory-efficient attention with a bias) runs the whole square."""
    if r.attention_flops and fusion == "fused" and getattr(r, "window_share", 0.0):
        return float(r.window_share)
    return CAUSAL_TILE_SHARE if r.attention_flops and r.causal and _fused_attention(r.op) else 1.0


def op_class(r: Any) -> str:
    if r.model_flops:
        if r.attention_flops:
            return "attention"
        if "convolution" in r.op:
            return "conv"
        return "matmul"
    if r.other_flops:
        return "vector"
    return "movement"


def per_op_overhead(device: Any, eff: Efficiency) -> tuple[float, str]:
    if device.per_op_overhead_s is not None:
        return float(device.per_op_overhead_s), device.source_of("per_op_overhead_s") if hasattr(device, "source_of") else "device"
    if device.kind in ("tpu", "accelerator"):
        return eff["per_op_overhead_tpu_s"], "efficiency factor per_op_overhead_tpu_s"
    return eff["per_op_overhead_gpu_s"], "efficiency factor per_op_overhead_gpu_s"


def peak_for_precision(device: Any, precision: str) -> tuple[float, str]:
    """Dense peak of the workload's math dtype; a one-line UserError when the device has none."""
    dtype = dtype_for_precision(precision)
    try:
        return device.peak_for(dtype), dtype
    except UserError as exc:
        raise UserError(f"--precision {precision} needs a {dtype} peak: {exc}") from None


# operator classes tensor parallelism always splits (their matrices are split), with or without sequence parallelism
_SPLIT_CLASSES = frozenset({"matmul", "attention", "conv"})


def _accumulate(records: Any, op_time: Any, gemm_bin: Any = None, replicated: Any = None, column: Any = None
                ) -> tuple[dict[str, PhaseProfile], PhaseProfile, PhaseProfile, int, dict[str, dict[tuple, GemmBin]],
                           dict[str, PhaseProfile]]:
    """Sum each kernel's (compute, memory) time by phase, for the transformer blocks' forward, for
    unfused attention's forward core (its two products and every kernel between them) and for the backward GEMMs
    of the blocks' column-parallel linears by group; total the recompute FLOPs of fused backward kernels. A kernel
    for which ``gemm_bin(r, cls)`` gives a bin (a table-rated GEMM) goes into that bin instead of the sums.
    ``replicated(module)``: whether a kernel outside the matrix classes runs whole on every tensor-parallel rank
    without sequence parallelism (PhaseProfile.replicated); ``column(module)``: (group, weight elements, trained)
    of a module inside a column-parallel linear, or None (memory/timeline.tp_readings)."""
    phases: dict[str, PhaseProfile] = {}
    columns: dict[str, PhaseProfile] = {}
    block_fwd = PhaseProfile()
    attn_fwd = PhaseProfile()
    fused = 0
    bins: dict[str, dict[tuple, GemmBin]] = {}
    core: str | None = None  # the module whose unfused attention core (scores product .. values product) is open
    for r in records:
        cls = op_class(r)
        binned = gemm_bin(r, cls) if gemm_bin is not None else None
        group = None
        if r.phase == "backward" and cls == "matmul" and column is not None:
            found = column(r.module or "")
            if found:
                # a trained linear's backward: the input-gradient GEMM and the weight-gradient one, which writes the
                # weight's elements (a frozen LoRA base runs the first only)
                name, numel, trained = found
                size = DTYPE_BYTES.get((r.out_dtype or "").replace("torch.", ""), 0)
                wgrad = trained and numel > 0 and r.bytes_written == numel * size
                group = f"{name}/{GRADIENT_GEMMS[wgrad]}"
        if binned is not None:
            key, fill = binned
            places = [r.phase]
            if r.phase == "forward" and _BLOCK_RE.search(r.module or ""):
                places.append(BLOCK_FORWARD)
            if group:
                places.append(COLUMN_BACKWARD + group)
                columns.setdefault(group, PhaseProfile())
            for place in places:
                b = bins.setdefault(place, {}).setdefault(key, GemmBin())
                fill(b)
            phases.setdefault(r.phase, PhaseProfile())
            continue
        tc, tm = op_time(r, cls)
        ph = phases.get(r.phase)
        if ph is None:
            ph = phases[r.phase] = PhaseProfile()
        repl = replicated is not None and cls not in _SPLIT_CLASSES and replicated(r.module or "")
        ph.add(cls, tc, tm, r, repl)
        if group:
            columns.setdefault(group, PhaseProfile()).add(cls, tc, tm, r)
        if r.phase == "forward":
            if _BLOCK_RE.search(r.module or ""):
                block_fwd.add(cls, tc, tm, r, repl)
            # Selective recomputation (Korthikanti et al. 2022, Sec. 4.2) re-runs the attention core: from the
            # scores product to the values product, with the softmax, mask and dropout between them.
            product = bool(r.attention_flops) and not _fused_attention(r.op)
            if core is not None and r.module != core:
                core = None  # a product without its pair: the core ended where its module did
            if product or core is not None:
                attn_fwd.add(cls, tc, tm, r)
            if product:
                core = r.module if core is None else None
        elif r.phase == "backward":
            fused += r.recompute_flops
    return phases, block_fwd, attn_fwd, fused, bins, columns


def resolve_fusion(device: Any, eff: Efficiency, fusion: str | None) -> tuple[str, str]:
    """The fusion mode a prediction uses, and why: the option when given, else the target stack's default."""
    if check_fusion(fusion) is not None:
        return str(fusion), "given with --fusion"
    return default_fusion(device, eff.measured_device)


def build_profile(trace: Any, device: Any, eff: Efficiency, precision: str, fusion: str | None = None) -> Profile:
    """The roofline profile of one trace on ``device``; ``fusion`` (none | fused | compiled; None: the target
    stack's default) groups the operators into the kernels the stack launches."""
    mode, why = resolve_fusion(device, eff, fusion)
    optimizer = optimizer_kernels(trace, mode)
    kernels, summary = fuse(trace.records, mode, why, optimizer)
    if eff.curves:
        profile = _build_profile_curves(trace, kernels, device, eff, precision)
    else:
        # the workload's attention picks the fused kernel's rate where the device class has one for it (flash2)
        attention = getattr(getattr(trace, "workload", None), "attention", None)
        from ..memory.timeline import tp_readings  # the memory model's reading of the same modules

        replicated, column = tp_readings(trace)
        profile = _build_profile(kernels, device, eff, precision, mode, attention=attention,
                                 replicated=replicated, column=column)
    profile.fusion = summary
    if mode == "none" and getattr(device, "kind", "") == "gpu" and not eff.curves:
        _add_host_time(profile, kernels, trace,
                       host.host_scale(device.per_op_overhead_s if eff.measured_device else None))
    if optimizer is not None:
        traced = sum(r.bytes_read + r.bytes_written for r in trace.records
                     if r.phase == "optimizer" and r.other_flops and not r.model_flops)
        profile.fallbacks.append(optimizer.describe(mode, traced))
    windowed = [k for k in kernels if k.attention_flops and compute_share(k, mode) != compute_share(k)]
    if windowed:
        shares = sorted({round(float(k.window_share), 4) for k in windowed})
        profile.fallbacks.append(
            f"sliding-window attention ({len(windowed):,} kernel calls) timed on the share of its score square inside "
            f"the window ({', '.join(f'{x:g}' for x in shares)}): the {mode} stack's FlashAttention kernels take a "
            "window size and skip the tiles outside it; the counted FLOPs stay the full square, and the mask "
            "transformers builds for SDPA (and its traffic) is still in the trace")
    causal = sum(1 for k in kernels if compute_share(k, mode) == CAUSAL_TILE_SHARE)
    if causal:
        profile.fallbacks.append(
            f"causal fused attention ({causal:,} kernel calls) timed on {CAUSAL_TILE_SHARE:g} of its counted score "
            "products: the kernels skip the tiles above the diagonal (FlashAttention-2 §3.1.1), and FlashAttention's "
            "TFLOP/s, the attention factor's source, count that share. FLOPs, MFU and HFU count the full square "
            "(the PaLM convention), so at long sequences MFU and HFU exceed the share of the peak the kernels use")
    return profile


def _add_host_time(profile: Profile, kernels: list[Any], trace: Any, scale: float = 1.0) -> None:
    """The eager host time of each phase (host.py): its operators by family, the modules its forward enters,
    the optimizer's parameters; the repeated blocks' forward too (what full recomputation re-dispatches). ``scale``:
    this host's dispatch speed against the reference host's (1: the reference)."""
    wl = getattr(trace, "workload", None)
    autocast = bool(getattr(wl, "autocast", False))
    tree = getattr(trace, "module_tree", None)
    for r in kernels:
        t = host.host_seconds(r, autocast)
        if not t:
            continue
        ph = profile.phases.setdefault(r.phase, PhaseProfile())
        ph.host_s += t
        if r.phase == "forward" and _BLOCK_RE.search(r.module or ""):
            profile.block_forward.host_s += t
    call = host.module_call_seconds()
    for phase in ("forward", "recompute"):
        if phase in profile.phases:
            profile.phases[phase].host_s += call * host.module_calls(kernels, phase, tree)
    profile.block_forward.host_s += call * host.module_calls(kernels, "forward", tree,
                                                             within=lambda path: bool(_BLOCK_RE.search(path)))
    if "optimizer" in profile.phases:
        trainable = sum(1 for p in (getattr(trace, "params", None) or ()) if p.trainable)
        profile.phases["optimizer"].host_s += host.optimizer_seconds(trainable)
    if scale != 1.0:
        for ph in list(profile.phases.values()) + [profile.block_forward]:
            ph.host_s *= scale
    profile.host_modelled = True
    profile.host_scale = scale


def _table_applies(eff: Efficiency, factor: str) -> bool:
    """A published table (GEMMs by size, fused attention by device class) replaces the flat ``factor`` unless the
    device was calibrated or the user set that factor."""
    f = eff.factors.get(factor)
    return not eff.measured_device and not (f is not None and f.provenance == "given")


def _build_profile(records: Any, device: Any, eff: Efficiency, precision: str, fusion: str = "none",
                   attention: str | None = None, replicated: Any = None, column: Any = None) -> Profile:
    peak, peak_dtype = peak_for_precision(device, precision)
    fallbacks: list[str] = []
    bw = device.memory_bandwidth_bytes_per_s * eff["memory_bandwidth"]
    vector_peak = device.peak_flops.get("fp32") or peak
    if "fp32" not in device.peak_flops:
        fallbacks.append(f"{device.id} lists no fp32 peak: elementwise arithmetic is rated against its {peak_dtype} peak")
    vector_rate = vector_peak * eff["vector"]
    rate_cache: dict[tuple[str, str, bool], float] = {}
    # fp8-mixed (Transformer Engine's fp8 autocast): the linear layers' GEMMs take FP8 inputs and write 16-bit
    # outputs, so a 16-bit matmul is an FP8 GEMM; attention and convolution stay 16-bit.
    fp8_gemms = precision == "fp8-mixed" and "fp8" in device.peak_flops
    if fp8_gemms:
        fallbacks.append("fp8-mixed: the 16-bit matmuls (linear layers, forward and backward) run as FP8 GEMMs "
                         "(Transformer Engine's fp8 autocast), rated against the fp8 peak × the flat matmul factor "
                         "(the GEMM size table is for 16-bit GEMMs); attention stays 16-bit. The casts are timed as "
                         "traced: in the forward each linear layer's input and weight to FP8 (one pass each, every "
                         "micro-batch, where Transformer Engine casts a weight once per step), in the backward the "
                         "saved FP8 copies back to 16 bits (Transformer Engine's GEMMs read FP8 directly and cast the "
                         "output gradients to FP8 instead, traffic of the same order); the scaling-factor updates "
                         "are not timed")

    # Grouped expert GEMMs (aten._grouped_mm) have no autocast kernel: Hugging Face's MoE code runs them in the
    # weights' dtype, fp32 under mixed precision with fp32 master weights (pytorch/pytorch#174763). A fused or
    # compiled training stack (Megatron-Core's grouped GEMM, TorchTitan) runs them on the 16-bit working weights.
    mixed = precision.endswith("-mixed")
    expert_dtype = _op_dtype(precision_of(precision).compute_dtype) if mixed and fusion != "none" else None
    if expert_dtype and any(r.op.startswith("aten._grouped_mm") and _op_dtype(r.out_dtype) == "fp32" for r in records):
        fallbacks.append(f"MoE expert GEMMs (aten._grouped_mm, fp32 in the traced Hugging Face code, which casts to "
                         f"the fp32 master weights' dtype) rated as {expert_dtype} grouped GEMMs, as the {fusion} "
                         "training stack runs them on its 16-bit working weights; their bytes stay as traced")

    def math_dtype(cls: str, dtype_name: str, op: str = "") -> str:
        d = _op_dtype(dtype_name) or peak_dtype
        if expert_dtype and d == "fp32" and cls == "matmul" and op.startswith("aten._grouped_mm"):
            d = expert_dtype
        return "fp8" if fp8_gemms and cls == "matmul" and d in ("bf16", "fp16") else d

    attn_rate = attention_rate(device, attention) if _table_applies(eff, "attention") else None
    rated_by_class = False

    def rate(cls: str, dtype_name: str, op: str = "", hint: tuple = ()) -> float:
        nonlocal rated_by_class
        fused_attention = cls == "attention" and _fused_attention(op)
        # a fused attention call is rated at its key length and head dimension (the formula's hint)
        at = (int(hint[2]), int(hint[3])) if fused_attention and len(hint) == 4 and hint[0] == "attention" else None
        key = (cls, dtype_name, op.startswith("aten._grouped_mm"), fused_attention, at)
        r = rate_cache.get(key)
        if r is None:
            d = math_dtype(cls, dtype_name, op)
            p = device.peak_flops.get(d)
            if p is None:
                note = f"{device.id} lists no {d} peak: {d} matrix operators are rated against its {peak_dtype} peak"
                if note not in fallbacks:
                    fallbacks.append(note)
                p = peak
            share = eff[cls]
            if fused_attention and attn_rate is not None and d in ("bf16", "fp16"):
                share, rated_by_class = (attn_rate.share_at(*at) if at else attn_rate.share), True
            r = p * share
            rate_cache[key] = r
        return r

    measured_norms, measured_convs = [0], [0]

    def op_time(r: Any, cls: str) -> tuple[float, float]:
        hint = getattr(r, "hint", ())
        if hint and hint[0] == "batch_norm" and fusion == "none":
            # PyTorch's own batch-norm kernels: their measured time, not their bytes at the bandwidth
            t = batch_norm_seconds(device, hint, backward="backward" in r.op)
            if t is not None:
                measured_norms[0] += 1
                return 0.0, t
        if hint and hint[0] == "conv" and r.model_flops and _table_applies(eff, "conv"):
            # cuDNN's convolutions at their measured rate (Inductor runs them channels_last)
            t = conv_seconds(device, hint, r.model_flops, backward="backward" in r.op,
                             layout="channels_last" if fusion == "compiled" else None)
            if t is not None:
                measured_convs[0] += 1
                return t + (r.other_flops / vector_rate if r.other_flops else 0.0), \
                    (r.bytes_read + r.bytes_written) / bw
        # a fused attention backward also recomputes Q·Kᵀ (recompute_flops): hardware work its kernel runs
        tc = (r.model_flops + r.recompute_flops) / rate(cls, r.out_dtype, r.op, hint) if r.model_flops else 0.0
        if r.other_flops:
            tc += r.other_flops / vector_rate
        return tc * compute_share(r, fusion), (r.bytes_read + r.bytes_written) / bw

    curves: dict[str, GemmCurve | None] = {}
    unaligned: dict[str, GemmCurve | None] = {}  # the curves of unaligned and fast-accumulating FP8 GEMMs
    use_table = _table_applies(eff, "matmul")

    def gemm_bin(r: Any, cls: str) -> Any:
        if cls != "matmul" or not use_table:
            return None
        d = math_dtype(cls, r.out_dtype, r.op)
        if d not in curves:
            curves[d] = gemm_curve(device, d)
        if curves[d] is None or d not in device.peak_flops:
            return None
        curve, tag = curves[d], ""
        if d == "fp8" and r.phase in FP8_FAST_PHASES:
            # a forward's FP8 GEMMs run with fast accumulation (Transformer Engine, torchao; gemm.toml says why)
            if "fp8:fast" not in unaligned:
                unaligned["fp8:fast"] = fp8_gemm_curve(device, r.phase)
            if unaligned["fp8:fast"] is not None:
                curve, tag = unaligned["fp8:fast"], "fp8:fast"
        if fusion == "none" and getattr(r, "unaligned", False):
            # eager kernels: cuBLAS's unaligned fallback (the fused and compiled stacks pad; gemm.toml says why)
            ukey = f"{d}:unaligned:{r.phase}"
            if ukey not in unaligned:
                unaligned[ukey] = unaligned_gemm_curve(device, d, r.phase)
            if unaligned[ukey] is not None:
                curve, tag = unaligned[ukey], ukey
        nbytes = r.bytes_read + r.bytes_written
        key = (d, tag, round(math.log2(r.model_flops) * 4), round(math.log2(r.model_flops / max(nbytes, 1)) * 4))

        def fill(b: GemmBin) -> None:
            b.calls += 1
            b.model_flops += r.model_flops
            b.other_flops += r.other_flops
            b.bytes += nbytes
            b.peak = device.peak_flops[d]
            b.curve = curve
            b.memory_s += nbytes / bw
            b.other_s += r.other_flops / vector_rate
        return key, fill

    phases, block_fwd, attn_fwd, fused, bins, columns = _accumulate(records, op_time, gemm_bin, replicated, column)
    overhead, overhead_source = per_op_overhead(device, eff)
    rates = {c: peak * eff[c] for c in ("matmul", "attention", "conv")}
    rates["vector"] = vector_rate
    rates["memory"] = bw
    table = next((c for c in curves.values() if c is not None), None) if bins else None
    if measured_convs[0]:
        fallbacks.append(f"16-bit 2-d convolutions ({measured_convs[0]:,} kernel calls) timed at the rate of the "
                         f"nearest measured convolution of their layout on {device.id}'s class, not at the flat conv "
                         f"factor ({kernels_source('conv2d')})")
    if measured_norms[0]:
        fallbacks.append(f"batch norm ({measured_norms[0]:,} kernel calls) timed at the rate of the nearest measured "
                         f"call of its layout and dtype on {device.id}'s class, not at the memory bandwidth: "
                         f"PyTorch's CUDA batch norm reduces each channel in its own blocks ({kernels_source('batch_norm')})")
    if rated_by_class:
        fallbacks.append(f"16-bit fused attention on {device.id} rated by its class, not the flat attention factor: "
                         f"{attn_rate.how}")
    return Profile(phases, block_fwd, attn_fwd, fused, overhead, peak, peak_dtype, rates, fallbacks, overhead_source,
                   gemm=table, gemm_bins=bins, attention=attn_rate if rated_by_class else None,
                   column_backward=columns)


def _build_profile_curves(trace: Any, records: Any, device: Any, eff: Efficiency, precision: str) -> Profile:
    """As _build_profile, with rates from a per-op-class calibration (mlfootprint.analysis.predict.opcurves) for fp32
    operators: compute kernels by FLOPs per byte moved, norms/pooling/elementwise by bytes moved."""

    base = _build_profile([], device, eff, precision)
    curves = {c: Curve(p) for c, p in (eff.curves or {}).items()}
    bw = device.memory_bandwidth_bytes_per_s * eff["memory_bandwidth"]
    vector_rate = base.rates["vector"]
    mem_curve = curves.get("memory")
    training = "backward" in (getattr(trace, "phases_run", None) or ())

    def op_time(r: Any, cls: str) -> tuple[float, float]:
        nbytes = r.bytes_read + r.bytes_written
        d = _op_dtype(r.out_dtype) or base.peak_dtype
        kind = kernel_kind(r.op, r.model_flops, r.attention_flops, training) if d == "fp32" else None
        curve = curves.get(kind) if kind else None
        tc = tm = 0.0
        if curve is not None and kind in COMPUTE_KINDS:
            tc = r.model_flops / curve(r.model_flops / max(nbytes, 1))  # the measured rate includes its traffic
            if r.other_flops:
                tc += r.other_flops / vector_rate
        elif curve is not None and kind in BYTE_KINDS:
            tm = nbytes / curve(nbytes)
        else:
            if r.model_flops:
                rate = (device.peak_flops.get(d) or base.peak_flops) * eff[cls]
                tc = (r.model_flops + r.recompute_flops) / rate
            if r.other_flops:
                tc += r.other_flops / (curve(r.other_flops) if curve is not None else vector_rate)
            tc *= compute_share(r)  # rated at peak × factor, as in _build_profile
            tm = nbytes / (mem_curve(nbytes) if mem_curve is not None else bw)
        return tc, tm

    from ..memory.timeline import tp_readings

    phases, block_fwd, attn_fwd, fused, _, columns = _accumulate(records, op_time, column=tp_readings(trace)[1])
    base.phases, base.block_forward, base.attention_forward, base.fused_recompute_flops = phases, block_fwd, attn_fwd, fused
    base.column_backward = columns
    return base
