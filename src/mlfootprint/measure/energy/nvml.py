"""NVIDIA GPU energy through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

Per GPU, the best source available is used:

1. the total energy counter, ``nvmlDeviceGetTotalEnergyConsumption`` (Volta and
   newer; millijoules since the driver loaded): energy is the difference of two
   reads. Method "NVML total energy counter".
2. where the counter is not supported, power readings
   (``nvmlDeviceGetPowerUsage``, milliwatts) sampled by a background thread
   every ``sample_interval_s`` seconds and integrated with the trapezoidal
   rule. This is still ``measured``, but the method says "power sampling" and
   a note says why and how approximate it is.

NVML counts whole GPUs, whatever process uses them. Which GPUs: the ``devices``
given (NVML indices), otherwise those ``CUDA_VISIBLE_DEVICES`` names, otherwise
all of them.

``nvidia-ml-py`` is an optional dependency (``pip install 'mlfootprint[energy]'``),
imported only when a meter is made; tests pass a stand-in module as ``nvml``.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ...core.errors import UserError

from .base import MEASURED, BackgroundPolling, Clock, EnergyMeter, EnergyReading, MeterError, MeterUnavailable

__all__ = ["NvmlMeter", "load_nvml"]

_NOT_INSTALLED = "nvidia-ml-py is not installed: pip install 'mlfootprint[energy]'"


def load_nvml() -> ModuleType:
    """Import ``pynvml`` or raise :class:`MeterUnavailable` saying how to install it."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        raise MeterUnavailable(_NOT_INSTALLED, meter="nvml") from None
    return pynvml


@dataclass
class _Gpu:
    index: int  # NVML index
    domain: str  # "gpu0"
    handle: Any
    sampled: bool  # True: power sampling; False: energy counter
    why_sampled: str = ""
    model: str = ""


def _decode(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlMeter(BackgroundPolling, EnergyMeter):
    """Energy of NVIDIA GPUs: the NVML energy counter, or sampled power where there is none."""

    name = "nvml"
    provenance = MEASURED

    def __init__(
        self,
        devices: Sequence[int] | None = None,
        *,
        nvml: Any = None,
        sample_interval_s: float | None = 0.1,
        force_sampling: bool = False,
        clock: Clock = time.monotonic,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if sample_interval_s is not None and sample_interval_s <= 0:
            raise UserError(f"NVML sample interval must be positive seconds, got {sample_interval_s}")
        self._nvml = load_nvml() if nvml is None else nvml
        self._err_cls: type[BaseException] = getattr(self._nvml, "NVMLError", Exception)
        self.sample_interval_s = sample_interval_s
        self._clock = clock
        self._setup_notes: list[str] = []
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._initialized = False
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - any failure here means "no NVML"
            raise MeterUnavailable(
                f"NVML could not start ({_decode(exc) or type(exc).__name__}): no NVIDIA driver "
                "is loaded on this machine, or it cannot be reached from here",
                meter=self.name,
            ) from None
        self._initialized = True
        try:
            self.gpus = self._open(devices, os.environ if env is None else env, force_sampling)
        except BaseException:
            self.close()
            raise
        self.method = self._describe()
        self._lock = threading.Lock()
        self._thread_error: BaseException | None = None
        self._t0: float | None = None
        self._counter0: dict[str, int] = {}
        self._power_prev: dict[str, float] = {}
        self._t_prev: float | None = None
        self._sampled_j: dict[str, float] = {}
        self._n_samples = 0

    # -- set-up --------------------------------------------------------------------
    def _visible(self, count: int, env: Mapping[str, str]) -> list[tuple[int, Any]]:
        """(NVML index, handle or None) for the GPUs CUDA_VISIBLE_DEVICES names."""
        n = self._nvml
        raw = env.get("CUDA_VISIBLE_DEVICES")
        if raw is None:
            return [(i, None) for i in range(count)]
        entries = [e.strip() for e in raw.split(",") if e.strip()]
        if not entries or entries[0].startswith("-"):
            raise MeterUnavailable(
                f"CUDA_VISIBLE_DEVICES={raw!r} hides every GPU from this process", meter=self.name
            )
        out: list[tuple[int, Any]] = []
        for e in entries:
            if e.isdigit() and int(e) < count:
                out.append((int(e), None))
            elif e.startswith("GPU-") and hasattr(n, "nvmlDeviceGetHandleByUUID"):
                try:
                    h = n.nvmlDeviceGetHandleByUUID(e)
                    idx = int(n.nvmlDeviceGetIndex(h)) if hasattr(n, "nvmlDeviceGetIndex") else len(out)
                except Exception:  # noqa: BLE001
                    break
                out.append((idx, h))
            else:
                break  # CUDA itself stops at the first entry it cannot use
        if len(out) < len(entries):
            self._setup_notes.append(
                f"CUDA_VISIBLE_DEVICES={raw!r} could not be fully mapped to NVML devices "
                f"(MIG instances and unknown entries are not measurable); all {count} GPUs are measured"
            )
            return [(i, None) for i in range(count)]
        if any(e.isdigit() for e in entries) and env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            self._setup_notes.append(
                "CUDA_VISIBLE_DEVICES indices were taken as NVML (PCI bus order) indices; that "
                "holds when CUDA_DEVICE_ORDER=PCI_BUS_ID or all GPUs are the same model"
            )
        return out

    def _open(self, devices: Sequence[int] | None, env: Mapping[str, str], force_sampling: bool) -> list[_Gpu]:
        n = self._nvml
        count = int(n.nvmlDeviceGetCount())
        if count == 0:
            raise MeterUnavailable("NVML sees no NVIDIA GPU on this machine", meter=self.name)
        if devices is not None:
            chosen: list[tuple[int, Any]] = []
            for d in devices:
                if not isinstance(d, int) or not 0 <= d < count:
                    raise UserError(
                        f"GPU index {d!r} does not exist: NVML sees {count} GPU(s), indices 0..{count - 1}"
                    )
                chosen.append((d, None))
        else:
            chosen = self._visible(count, env)
        gpus: list[_Gpu] = []
        for idx, handle in chosen:
            if handle is None:
                handle = n.nvmlDeviceGetHandleByIndex(idx)
            model = ""
            if hasattr(n, "nvmlDeviceGetName"):
                try:
                    model = _decode(n.nvmlDeviceGetName(handle))
                except Exception:  # noqa: BLE001 - the name is decoration
                    model = ""
            gpu = _Gpu(index=idx, domain=f"gpu{idx}", handle=handle, sampled=False, model=model)
            counter_error: str | None = None
            if force_sampling:
                counter_error = "power sampling was requested"
            else:
                try:
                    n.nvmlDeviceGetTotalEnergyConsumption(handle)
                except self._err_cls as exc:
                    counter_error = f"energy counter not supported: {_decode(exc) or type(exc).__name__}"
            if counter_error is not None:
                try:
                    n.nvmlDeviceGetPowerUsage(handle)
                except self._err_cls as exc:
                    raise MeterUnavailable(
                        f"GPU {idx}: NVML gives neither an energy counter ({counter_error}) "
                        f"nor power readings ({_decode(exc) or type(exc).__name__})",
                        meter=self.name,
                    ) from None
                gpu.sampled = True
                gpu.why_sampled = counter_error
            gpus.append(gpu)
        return gpus

    def _describe(self) -> str:
        rate = (
            f"at {1.0 / self.sample_interval_s:g} Hz" if self.sample_interval_s is not None else "at each read"
        )
        counted = [g.domain for g in self.gpus if not g.sampled]
        sampled = [g.domain for g in self.gpus if g.sampled]
        if not sampled:
            return "NVML total energy counter"
        if not counted:
            return f"NVML power sampling {rate}"
        return (
            f"NVML total energy counter ({', '.join(counted)}), "
            f"power sampling {rate} ({', '.join(sampled)})"
        )

    # -- measuring -----------------------------------------------------------------
    @property
    def _sampled_gpus(self) -> list[_Gpu]:
        return [g for g in self.gpus if g.sampled]

    def _sample_locked(self, now: float) -> None:
        powers = {
            g.domain: float(self._nvml.nvmlDeviceGetPowerUsage(g.handle)) / 1000.0
            for g in self._sampled_gpus
        }
        if self._t_prev is not None:
            dt = now - self._t_prev
            for d, p in powers.items():
                self._sampled_j[d] += 0.5 * (self._power_prev[d] + p) * dt
        self._power_prev = powers
        self._t_prev = now
        self._n_samples += 1

    def _sample(self, now: float | None = None) -> None:
        """Take one power sample of every sampled GPU (the sampling thread calls this)."""
        if not self._sampled_gpus:
            return
        with self._lock:
            self._sample_locked(self._clock() if now is None else now)

    def start(self) -> None:
        self._stop_thread()
        with self._lock:
            self._thread_error = None
            self._t_prev = None
            self._power_prev = {}
            self._n_samples = 0
            self._sampled_j = {g.domain: 0.0 for g in self._sampled_gpus}
            self._counter0 = {
                g.domain: int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
                for g in self.gpus
                if not g.sampled
            }
            now = self._clock()
            if self._sampled_gpus:
                self._sample_locked(now)
            self._t0 = now
        if self._sampled_gpus and self.sample_interval_s is not None:
            self._start_polling(self._sample, self.sample_interval_s, "mlfootprint-nvml-sampler")

    def read(self) -> EnergyReading:
        if self._t0 is None:
            raise MeterError("NVML meter read before start()")
        if self._thread_error is not None:
            raise MeterError(
                f"NVML power sampling failed: {_decode(self._thread_error)}"
            ) from self._thread_error
        with self._lock:
            now = self._clock()
            if self._sampled_gpus:
                self._sample_locked(now)
            by_domain: dict[str, float] = {}
            for g in self.gpus:
                if g.sampled:
                    by_domain[g.domain] = self._sampled_j[g.domain]
                    continue
                cur = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
                delta_mj = cur - self._counter0[g.domain]
                if delta_mj < 0:
                    raise MeterError(
                        f"GPU {g.index}'s NVML energy counter went backwards "
                        f"({self._counter0[g.domain]} -> {cur} mJ): driver reloaded or GPU reset"
                    )
                by_domain[g.domain] = delta_mj / 1000.0
            elapsed = now - self._t0
            n_samples = self._n_samples
        return EnergyReading(
            energy_j=sum(by_domain.values()),
            by_domain=by_domain,
            elapsed_s=elapsed,
            provenance=self.provenance,
            method=self.method,
            notes=self._notes(elapsed, n_samples),
        )

    def _notes(self, elapsed: float, n_samples: int) -> list[str]:
        notes = ["NVML measures whole GPUs, including other processes running on them"]
        models = [f"{g.domain}: {g.model}" for g in self.gpus if g.model]
        if models:
            notes.append("GPUs: " + "; ".join(models))
        notes.extend(self._setup_notes)
        for g in self._sampled_gpus:
            notes.append(
                f"{g.domain}: {g.why_sampled}; energy integrated (trapezoidal rule) from "
                f"{n_samples} sampled power readings, measured but approximate: the driver's "
                "power figure may itself be averaged over up to ~1 s"
            )
        if elapsed < 1.0 and any(not g.sampled for g in self.gpus):
            notes.append(
                f"interval of {elapsed:.3f} s is short: the NVML energy counter updates "
                "every ~20-100 ms, so the figure is coarse"
            )
        return notes

    def stop(self) -> EnergyReading:
        self._stop_thread()
        return self.read()

    def close(self) -> None:
        self._stop_thread()
        if getattr(self, "_initialized", False):
            self._initialized = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - nothing to do about it
                pass
