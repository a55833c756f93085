"""Whose kernels a trace emulates: the target device's kind decides (``kernels.py`` emulates them).

The trace runs on fake CPU tensors; a GPU target (``--hardware`` naming a GPU) makes it follow CUDA's kernel
choices, no target or a CPU one the CPU's own. Nothing here imports torch: the persistent trace cache keys on the
target, and a cache hit runs without torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..hardware.catalog import get_device
from ..workload import Workload
from .constants import KERNELS as CONSTANTS


@dataclass(frozen=True)
class Target:
    """Whose kernels the trace emulates: ``kernels`` is ``cpu`` or ``cuda``; ``device`` the catalog id named."""

    kernels: str
    device: str | None
    reason: str

    @property
    def gpu(self) -> bool:
        return self.kernels == "cuda"


def target_of(wl: Workload) -> Target:
    """The target of a workload: its ``hardware``'s kind decides; none named means this machine's CPU."""
    if not wl.hardware:
        return Target("cpu", None, "no target device named: the trace follows this machine's CPU kernels")
    dev = get_device(wl.hardware)
    kernels = str(CONSTANTS.value("targets", dev.kind))
    if kernels == "cuda":
        why = (f"--hardware {dev.id} is a {dev.kind}: the trace emulates CUDA's kernels (fused SDPA without T×T "
               "tensors, one-byte dropout masks, foreach optimizers)")
    else:
        why = f"--hardware {dev.id} is a {dev.kind}: the trace follows the CPU's kernels"
    return Target(kernels, dev.id, why)
