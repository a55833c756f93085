"""GEMM efficiency by size: achieved / peak of a 16-bit (or FP8) matrix multiplication by its FLOPs per call.

The points are microbenchmarks, published or measured with ``benchmarks/gemm_sweep.py``, one table per device
class (``data/gemm.toml``, each with its source and date). For a FLOP count F the efficiency is the median, over
the table's shapes with that count (2·m·n·k), of achieved / peak; between counts it is interpolated linearly in
log2(F), and it is flat beyond the ends. A GPU that is no class's member takes the class whose dense 16-bit peak
is nearest on a log scale. A class with an FP8 table (``fp8_points``) rates FP8 GEMMs by it, against the FP8 peak;
other classes leave FP8 GEMMs to the flat factor.

    curve = gemm_curve(get_device("h100-sxm"), "bf16")
    curve(2 * 1024**3)     # 0.307: a 1024³ GEMM reaches under a third of the peak
    curve(2 * 8192**3)     # 0.699: large GEMMs at sustained (power-capped) clocks
"""
from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass
from typing import Any

from ...core.datafiles import SourcedConstants

GEMM = SourcedConstants("analysis.predict", "gemm.toml", "gemm")
CLASSES = ("h100", "a100", "b200")
#: Dtypes the tables describe: 16-bit tensor-core GEMMs (fp16 runs at the bf16 rate on these GPUs).
DTYPES = ("bf16", "fp16")


@dataclass(frozen=True)
class GemmCurve:
    """Efficiency (fraction of the dense peak) against FLOPs per GEMM call, for one device class."""

    device_class: str
    log2_flops: tuple[float, ...]
    efficiency: tuple[float, ...]
    how: str  # how the class was chosen, and where its points come from

    def __call__(self, flops: float) -> float:
        if flops <= 0:
            return self.efficiency[0]
        x = math.log2(flops)
        i = bisect.bisect_left(self.log2_flops, x)
        if i <= 0:
            return self.efficiency[0]
        if i >= len(self.log2_flops):
            return self.efficiency[-1]
        x0, x1 = self.log2_flops[i - 1], self.log2_flops[i]
        y0, y1 = self.efficiency[i - 1], self.efficiency[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _median_by_flops(points: list, peak: float) -> list[tuple[float, float]]:
    """(log2 FLOPs, efficiency) of [m, n, k, achieved FLOP/s] points: the median over the shapes of each count."""
    by_flops: dict[float, list[float]] = {}
    for m, n, k, rate in points:
        by_flops.setdefault(2.0 * m * n * k, []).append(float(rate) / peak)
    return [(math.log2(f), statistics.median(v)) for f, v in sorted(by_flops.items())]


def _measured_points(cls: str, prefix: str = "", peak_key: str | None = None) -> list[tuple[float, float]]:
    """(log2 FLOPs, efficiency): the median over the shapes of each FLOP count, then the ceiling. ``prefix``
    selects another table of the class ("fp8_": fp8_points, fp8_ceiling, read against fp8_peak_flops)."""
    peak = float(GEMM.value(cls, peak_key or f"{prefix}peak_flops"))
    pts = _median_by_flops(GEMM.value(cls, f"{prefix}points"), peak)
    m, n, k, rate = GEMM.value(cls, f"{prefix}ceiling")
    ceiling = (math.log2(2.0 * m * n * k), float(rate) / peak)
    return sorted([p for p in pts if p[0] < ceiling[0]] + [ceiling])


_curves: dict[str, GemmCurve] = {}


def fp8_class_curve(cls: str, fast: bool = False) -> GemmCurve | None:
    """The FP8 curve of one device class (cached): with periodic promotion to fp32 (the backward's GEMMs), or
    with fast accumulation (``fast``: the forward's); None when the class has no such table."""
    key = f"{cls}:fp8{':fast' if fast else ''}"
    if key not in _curves:
        prefix = "fp8_fast_" if fast else "fp8_"
        if not GEMM.has(cls, f"{prefix}points"):
            return None
        pts = _measured_points(cls, prefix, peak_key="fp8_peak_flops")
        how = (f"{cls} FP8 table{' (fast accumulation)' if fast else ''}: {GEMM.source(cls, f'{prefix}points')}; "
               f"ceiling: {GEMM.source(cls, f'{prefix}ceiling')}")
        _curves[key] = GemmCurve(cls, tuple(p[0] for p in pts), tuple(p[1] for p in pts), how)
    return _curves[key]


#: Phases whose FP8 GEMMs are a forward's (Transformer Engine and torchao run them with fast accumulation).
FP8_FAST_PHASES = ("forward", "recompute")


def fp8_gemm_curve(device: Any, phase: str) -> GemmCurve | None:
    """The curve for ``device``'s FP8 GEMMs in ``phase``: the fast-accumulation table in a forward, the promoting
    one in the backward; None where the flat factor applies."""
    c = gemm_curve(device, "fp8")
    if c is None or phase not in FP8_FAST_PHASES:
        return c
    fast = fp8_class_curve(c.device_class, fast=True)
    return c if fast is None else GemmCurve(fast.device_class, fast.log2_flops, fast.efficiency,
                                            c.how.split("; ", 1)[0] + "; " + fast.how)


def class_curve(cls: str) -> GemmCurve:
    """The curve of one device class (cached)."""
    if cls in _curves:
        return _curves[cls]
    if GEMM.has(cls, "points"):
        pts = _measured_points(cls)
        how = f"{cls} table: {GEMM.source(cls, 'points')}; ceiling: {GEMM.source(cls, 'ceiling')}"
    else:
        # Only a ceiling was published: the shape of another class's curve, scaled to meet it.
        base = class_curve(str(GEMM.value(cls, "shape_from")))
        m, n, k, rate = GEMM.value(cls, "ceiling")
        f = 2.0 * m * n * k
        scale = float(rate) / float(GEMM.value(cls, "peak_flops")) / base(f)
        pts = sorted([(x, min(1.0, y * scale)) for x, y in zip(base.log2_flops, base.efficiency) if x < math.log2(f)]
                     + [(math.log2(f), float(rate) / float(GEMM.value(cls, "peak_flops")))])
        how = (f"{cls} ceiling: {GEMM.source(cls, 'ceiling')}; below it the {base.device_class} curve scaled by "
               f"{scale:.3f} ({GEMM.source(cls, 'shape_from')})")
    if GEMM.has(cls, "calibrated_scale"):
        # The level of a class with no sweep, set from published training runs of the calibration split (the data
        # file names them): every point, the ceiling included, times the factor.
        factor = float(GEMM.value(cls, "calibrated_scale"))
        pts = [(x, min(1.0, y * factor)) for x, y in pts]
        how += f"; the whole curve times {factor:.3f} ({GEMM.source(cls, 'calibrated_scale')})"
    curve = GemmCurve(cls, tuple(p[0] for p in pts), tuple(p[1] for p in pts), how)
    _curves[cls] = curve
    return curve


#: The roles of the unaligned table read in each phase: the forward's x·Wᵀ (a recomputed forward too), the
#: backward's two gradients.
UNALIGNED_ROLES = {"forward": ("fwd",), "recompute": ("fwd",), "backward": ("dgrad", "wgrad")}


def _min_curve(a: GemmCurve, b: GemmCurve, how: str) -> GemmCurve:
    """The lower of two curves, sampled at both curves' points and every quarter octave between."""
    lo, hi = min(a.log2_flops[0], b.log2_flops[0]), max(a.log2_flops[-1], b.log2_flops[-1])
    xs = sorted(set(a.log2_flops) | set(b.log2_flops) | {lo + i / 4 for i in range(int((hi - lo) * 4) + 1)})
    return GemmCurve(a.device_class, tuple(xs), tuple(min(a(2.0 ** x), b(2.0 ** x)) for x in xs), how)


def unaligned_class_curve(cls: str, phase: str) -> GemmCurve | None:
    """Unaligned 16-bit GEMMs of ``phase`` on class ``cls``: the lower of its unaligned table (the phase's roles)
    and its aligned curve; None when the class has no unaligned table."""
    key = f"{cls}:unaligned:{phase}"
    if key not in _curves:
        if not GEMM.has(cls, "unaligned_points"):
            return None
        roles = UNALIGNED_ROLES.get(phase, ("fwd", "dgrad", "wgrad"))
        peak = float(GEMM.value(cls, "peak_flops"))
        pts = _median_by_flops([p[:4] for p in GEMM.value(cls, "unaligned_points") if p[4] in roles], peak)
        table = GemmCurve(cls, tuple(p[0] for p in pts), tuple(p[1] for p in pts), "")
        aligned = class_curve(cls)
        _curves[key] = _min_curve(aligned, table, f"unaligned ({'/'.join(roles)}) {cls} table: "
                                                  f"{GEMM.source(cls, 'unaligned_points')}, capped by {aligned.how}")
    return _curves[key]


def unaligned_gemm_curve(device: Any, dtype: str, phase: str) -> GemmCurve | None:
    """The curve for ``device``'s unaligned 16-bit GEMMs in ``phase``, or None (rate them as aligned ones)."""
    if dtype not in DTYPES:
        return None
    cls, why = device_class(device)
    if cls is None or device.id not in GEMM.value(cls, "members"):
        return None  # measured on this class's own GPUs only
    c = unaligned_class_curve(cls, phase)
    return None if c is None else GemmCurve(c.device_class, c.log2_flops, c.efficiency, f"{why}; {c.how}")


def device_class(device: Any) -> tuple[str | None, str]:
    """The class whose table rates ``device``'s GEMMs, and why; None for non-GPUs and GPUs without a 16-bit peak."""
    if getattr(device, "kind", None) != "gpu":
        return None, f"{device.id} is a {getattr(device, 'kind', '?')}: no GEMM-by-size table"
    for cls in CLASSES:
        if device.id in GEMM.value(cls, "members"):
            return cls, f"{device.id} is in the {cls} class"
    peak = device.peak_flops.get("bf16") or device.peak_flops.get("fp16")
    if not peak:
        return None, f"{device.id} lists no 16-bit peak: no GEMM-by-size table"
    nearest = min(CLASSES, key=lambda c: abs(math.log(peak / float(GEMM.value(c, "peak_flops")))))
    return nearest, (f"{device.id} takes the {nearest} class, the nearest by dense 16-bit peak "
                     f"({peak / 1e12:.0f} vs {float(GEMM.value(nearest, 'peak_flops')) / 1e12:.0f} TFLOP/s)")


def gemm_curve(device: Any, dtype: str) -> GemmCurve | None:
    """The curve for ``device``'s ``dtype`` GEMMs, or None when no table applies (the flat factor does)."""
    if dtype not in DTYPES and dtype != "fp8":
        return None
    cls, why = device_class(device)
    if cls is None:
        return None
    if dtype == "fp8":
        # FP8 tables are not carried across classes by peak: only a member's own class rates them
        if device.id not in GEMM.value(cls, "members") or "fp8" not in device.peak_flops:
            return None
        c = fp8_class_curve(cls)
        if c is None:
            return None
    else:
        c = class_curve(cls)
    return GemmCurve(c.device_class, c.log2_flops, c.efficiency, f"{why}; {c.how}")
