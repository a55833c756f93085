"""The achieved rate of fused attention kernels on a device class, from microbenchmarks (published or measured).

``data/attention.toml`` holds, per class, the forward and backward FLOP/s of the fused kernel its default stack
runs, at training sequence lengths. The share of the peak is the median over those points of the training rate
(F + 2.5·F) / (F / forward + 2.5·F / backward): FlashAttention's accounting, whose backward does 2.5 × the
forward's FLOPs (Dao 2023, arXiv:2307.08691, §4.1), which is how the roofline times a fused backward (its model
FLOPs and the Q·Kᵀ it recomputes).
"""
from __future__ import annotations

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
    share: float
    how: str  # the kernel, the points and their source, in words


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
    return AttentionRate(cls, share, f"{name} at {share:.3f} of the {peak / 1e12:.1f} TFLOP/s peak: the median "
                                     f"training rate over sequences {seqs} ({ATTENTION.source(section, 'points')})")


def attention_rate(device: Any, attention: str | None = None) -> AttentionRate | None:
    """The class rate for a member device: of the kernel the workload's ``attention`` names where the data file
    has a section ``<class>-<attention>`` for it (``h100-flash2``), else of the class's default kernel; None where
    the flat ``attention`` factor applies."""
    for cls in CLASSES:
        if getattr(device, "id", None) in ATTENTION.value(cls, "members"):
            own = attention is not None and ATTENTION.has(f"{cls}-{attention}", "points")
            return class_rate(cls, attention if own else None)
    return None
