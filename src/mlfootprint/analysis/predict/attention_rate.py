"""The achieved rate of fused attention kernels on a device class, from microbenchmarks (published or measured).

``data/attention.toml`` holds, per class, the forward and backward FLOP/s of the fused kernel its default stack
runs, at training sequence lengths. The share of the peak is the training rate
(F + 2.5·F) / (F / forward + 2.5·F / backward): FlashAttention's accounting, whose backward does 2.5 × the
forward's FLOPs (Dao 2023, arXiv:2307.08691, §4.1), which is how the roofline times a fused backward (its model
FLOPs and the Q·Kᵀ it recomputes), read at each call's key length (interpolated in log2, flat beyond the points)
and, for heads of 80 or fewer, from the class's head-dimension-64 section; the median over the points stands for
a call of unknown length.
"""
from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...core.datafiles import SourcedConstants

ATTENTION = SourcedConstants("analysis.predict", "attention.toml", "attention")
CLASSES = ("h100",)
BACKWARD_FLOPS_PER_FORWARD = 2.5  # FlashAttention's accounting (§4.1): dV, dP, dQ, dK and the recomputed Q·Kᵀ


@dataclass(frozen=True)
class AttentionRate:
    """Share of the dense 16-bit peak one device class's fused attention kernel reaches in training."""

    device_class: str
    share: float  # the median over the section's points: for a call of unknown length
    how: str  # the kernel, the points and their source, in words
    section: str = ""  # the data file's section: share_at reads its points (and its -d64 twin)

    def share_at(self, seq: int, head_dim: int) -> float:
        """The share for one call with keys of length ``seq`` and heads of ``head_dim``: the training rate
        interpolated in log2(seq) over the points (flat beyond them), from the -d64 section when the head
        dimension is 80 or less and the class has one."""
        return _share_at(self.section, int(seq), int(head_dim)) if self.section else self.share


#: Head dimensions up to this read a class's "-d64" section (measured at 64) where it has one.
SMALL_HEAD_DIM = 80


@lru_cache(maxsize=None)
def _curve(section: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    peak = float(ATTENTION.value(section, "peak_flops"))
    pts = sorted((math.log2(float(s)), training_rate(float(f), float(b)) / peak)
                 for s, f, b in ATTENTION.value(section, "points"))
    return tuple(x for x, _ in pts), tuple(y for _, y in pts)


@lru_cache(maxsize=4096)
def _share_at(section: str, seq: int, head_dim: int) -> float:
    if head_dim <= SMALL_HEAD_DIM and ATTENTION.has(f"{section}-d64", "points"):
        section = f"{section}-d64"
    xs, ys = _curve(section)
    if seq <= 0:
        return statistics.median(ys)
    x = math.log2(seq)
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])


def training_rate(forward: float, backward: float) -> float:
    """FLOP/s of one forward and one backward together, FlashAttention's FLOPs (backward = 2.5 × forward)."""
    total = 1.0 + BACKWARD_FLOPS_PER_FORWARD
    return total / (1.0 / forward + BACKWARD_FLOPS_PER_FORWARD / backward)


@lru_cache(maxsize=None)
def class_rate(cls: str, kernel: str | None = None) -> AttentionRate:
    """The rate of the class's default kernel, or of ``kernel`` (a section ``<cls>-<kernel>``)."""
    section = f"{cls}-{kernel}" if kernel else cls
    peak = float(ATTENTION.value(section, "peak_flops"))
    points = ATTENTION.value(section, "points")
    share = statistics.median(training_rate(float(f), float(b)) for _, f, b in points) / peak
    name = ATTENTION.value(section, "kernel")
    seqs = ", ".join(f"{int(s):,}" for s, _, _ in points)
    return AttentionRate(cls, share, f"{name}, each call at the training rate of its key length (and of head "
                                     f"dimension 64 for heads of {SMALL_HEAD_DIM} or fewer, where measured): "
                                     f"{share:.3f} of the {peak / 1e12:.1f} TFLOP/s peak at the median over sequences "
                                     f"{seqs} ({ATTENTION.source(section, 'points')})", section)


def attention_rate(device: Any, attention: str | None = None) -> AttentionRate | None:
    """The class rate for a member device: of the kernel the workload's ``attention`` names where the data file
    has a section ``<class>-<attention>`` for it (``h100-flash2``), else of the class's default kernel; None where
    the flat ``attention`` factor applies."""
    for cls in CLASSES:
        if getattr(device, "id", None) in ATTENTION.value(cls, "members"):
            own = attention is not None and ATTENTION.has(f"{cls}-{attention}", "points")
            return class_rate(cls, attention if own else None)
    return None
