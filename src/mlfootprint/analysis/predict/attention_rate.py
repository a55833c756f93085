"""The achieved rate of fused attention kernels on a device class, from published microbenchmarks.

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
def class_rate(cls: str) -> AttentionRate:
    peak = float(ATTENTION.value(cls, "peak_flops"))
    points = ATTENTION.value(cls, "points")
    share = statistics.median(training_rate(float(f), float(b)) for _, f, b in points) / peak
    kernel = ATTENTION.value(cls, "kernel")
    seqs = ", ".join(f"{int(s):,}" for s, _, _ in points)
    return AttentionRate(cls, share, f"{kernel} at {share:.3f} of the {peak / 1e12:.1f} TFLOP/s peak: the median "
                                     f"training rate over sequences {seqs} ({ATTENTION.source(cls, 'points')})")


def attention_rate(device: Any) -> AttentionRate | None:
    """The class rate for a member device; None where the flat ``attention`` factor applies."""
    for cls in CLASSES:
        if getattr(device, "id", None) in ATTENTION.value(cls, "members"):
            return class_rate(cls)
    return None
