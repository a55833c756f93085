"""Energy meters: measured where the hardware allows, modeled only when asked.

Backends, all behind :class:`EnergyMeter` (``start`` / ``read`` / ``poll`` / ``stop``):

* :class:`NvmlMeter`: NVIDIA GPUs, NVML energy counter (or sampled power);
* :class:`RaplMeter`: CPU packages and DRAM, RAPL through Linux powercap;
* :class:`ModeledMeter`: devices × TDP × utilization × time (provenance ``modeled``).

:func:`auto_meter` picks the measured meter for a device. If it is not
available here it raises :class:`MeterUnavailable` with the reason, unless the
caller gave ``fallback_tdp_w``: then it returns a :class:`ModeledMeter` whose
readings carry the note ``"modeled because: <reason>"``. Wrap a meter in
:class:`SafeMeter` so that a failure mid-run is logged once and reported in the
readings instead of raised.

Typical use in a training loop::

    meter = SafeMeter(auto_meter("cuda", fallback_tdp_w=700))
    meter.start()
    for step in ...:
        train_step()
        meter.poll()          # cheap; keeps wrapping counters correct
    reading = meter.stop()    # reading.energy_j, .provenance, .method, .notes
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...core.errors import UserError

from .base import (
    MEASURED,
    MODELED,
    EnergyMeter,
    EnergyReading,
    MeterError,
    MeterUnavailable,
    SafeMeter,
    logger,
)
from .modeled import ModeledMeter
from .nvml import NvmlMeter
from .rapl import DEFAULT_ROOT, RaplMeter

__all__ = [
    "MEASURED",
    "MODELED",
    "EnergyMeter",
    "EnergyReading",
    "MeterError",
    "MeterUnavailable",
    "ModeledMeter",
    "NvmlMeter",
    "RaplMeter",
    "SafeMeter",
    "auto_meter",
    "available_meters",
    "logger",
]

# torch device types that exist but have no energy meter here (yet).
_UNMETERED_TYPES = {"mps", "xpu", "hip", "npu", "hpu", "mtia", "xla", "ipu", "privateuseone"}


def available_meters(
    *,
    nvml: Any = None,
    rapl_root: str | os.PathLike[str] = DEFAULT_ROOT,
    env: Mapping[str, str] | None = None,
) -> list[tuple[str, EnergyMeter | str]]:
    """Every measured meter and, for each, a ready meter or the reason it is unavailable.

    The modeled meter is not listed: it measures nothing. Meters returned hold
    resources (an NVML session); ``close()`` those not used.
    """
    out: list[tuple[str, EnergyMeter | str]] = []
    try:
        out.append(("nvml", NvmlMeter(nvml=nvml, env=env)))
    except MeterUnavailable as exc:
        out.append(("nvml", exc.reason))
    try:
        out.append(("rapl", RaplMeter(rapl_root)))
    except MeterUnavailable as exc:
        out.append(("rapl", exc.reason))
    return out


def _parse_device(device: Any) -> tuple[str, int | None]:
    dtype = getattr(device, "type", None)
    if dtype is not None:  # a torch.device
        return str(dtype), getattr(device, "index", None)
    text = str(device).strip().lower()
    kind, sep, index = text.partition(":")
    if sep:
        if not index.isdigit():
            raise UserError(f"bad device {device!r}: expected e.g. 'cuda', 'cuda:1' or 'cpu'")
        return kind, int(index)
    return kind, None


def _nvml_index(cuda_index: int, env: Mapping[str, str]) -> int | None:
    """NVML index of ``cuda:N`` (None: CUDA_VISIBLE_DEVICES uses UUIDs; measure what is visible)."""
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return cuda_index
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if not all(e.isdigit() for e in entries):
        return None
    if cuda_index >= len(entries):
        raise UserError(
            f"device cuda:{cuda_index} does not exist: CUDA_VISIBLE_DEVICES={raw!r} "
            f"makes {len(entries)} GPU(s) visible"
        )
    return int(entries[cuda_index])


def auto_meter(
    device: Any = "cuda",
    fallback_tdp_w: float | None = None,
    *,
    fallback_utilization: float | Callable[[], float] = 1.0,
    fallback_devices: int = 1,
    nvml: Any = None,
    rapl_root: str | os.PathLike[str] = DEFAULT_ROOT,
    clock: Callable[[], float] = time.monotonic,
    env: Mapping[str, str] | None = None,
) -> EnergyMeter:
    """The measured meter for ``device`` ("cuda", "cuda:N" or "cpu").

    NVML for CUDA devices, RAPL for the CPU. When that meter is unavailable:
    with ``fallback_tdp_w`` (watts per device), a :class:`ModeledMeter` for
    ``fallback_devices`` devices at ``fallback_utilization`` (1.0, an upper
    bound, unless given) whose readings say ``"modeled because: <reason>"``;
    without it, :class:`MeterUnavailable` is raised.
    """
    env = os.environ if env is None else env
    kind, index = _parse_device(device)
    reason: str
    if kind == "cuda":
        devices = None
        if index is not None:
            nvml_idx = _nvml_index(index, env)
            devices = None if nvml_idx is None else [nvml_idx]
        try:
            return NvmlMeter(devices, nvml=nvml, clock=clock, env=env)
        except MeterUnavailable as exc:
            reason = exc.reason
        prefix = "gpu"
    elif kind == "cpu":
        try:
            return RaplMeter(rapl_root, clock=clock)
        except MeterUnavailable as exc:
            reason = exc.reason
        prefix = "cpu"
    elif kind in _UNMETERED_TYPES:
        reason = f"mlfootprint has no energy meter for {kind} devices"
        prefix = kind
    else:
        raise UserError(f"unknown device {device!r}: expected 'cuda', 'cuda:N' or 'cpu'")
    if fallback_tdp_w is None:
        raise MeterUnavailable(
            f"{reason}; pass a TDP (fallback_tdp_w) to use a modeled estimate instead", meter=kind
        )
    return ModeledMeter(
        fallback_tdp_w,
        fallback_utilization,
        fallback_devices,
        clock=clock,
        because=reason,
        domain_prefix=prefix,
    )
