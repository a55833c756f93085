"""Energy from a model: devices × TDP × utilization × elapsed time.

This is not a measurement and never poses as one: its provenance is
``modeled`` and its ``method`` states the formula with its numbers. It is used
only when a caller asks for it, or (through ``auto_meter(..., fallback_tdp_w=...)``)
when nothing on the machine can measure, and the reading then says why.

``utilization`` is a fraction in [0, 1], or a callable returning one (for
example GPU utilization from a monitor); a callable is sampled at start, at
every :meth:`ModeledMeter.poll` and read, and integrated with the trapezoidal rule.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from ...core.errors import UserError

from .base import MODELED, Clock, EnergyMeter, EnergyReading, MeterError

__all__ = ["ModeledMeter"]


class ModeledMeter(EnergyMeter):
    """TDP × utilization × time, for ``devices`` identical devices."""

    name = "modeled"
    provenance = MODELED

    def __init__(
        self,
        tdp_w: float,
        utilization: float | Callable[[], float] = 1.0,
        devices: int = 1,
        *,
        clock: Clock = time.monotonic,
        because: str | None = None,
        domain_prefix: str = "device",
    ) -> None:
        if isinstance(tdp_w, bool) or not isinstance(tdp_w, (int, float)) or not math.isfinite(tdp_w) or tdp_w <= 0:
            raise UserError(f"TDP must be a positive number of watts, got {tdp_w!r}")
        if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
            raise UserError(f"devices must be a whole number >= 1, got {devices!r}")
        if not callable(utilization):
            if isinstance(utilization, bool) or not isinstance(utilization, (int, float)) or not 0.0 <= utilization <= 1.0:
                raise UserError(
                    f"utilization must be a fraction between 0 and 1 (e.g. 0.6 for 60%), got {utilization!r}"
                )
        self.tdp_w = float(tdp_w)
        self.utilization = utilization
        self.devices = devices
        self.because = because
        self.domain_prefix = domain_prefix
        self._clock = clock
        if callable(utilization):
            source = getattr(utilization, "__qualname__", None) or type(utilization).__name__
            util_text = f"utilization sampled from {source}"
        else:
            util_text = f"utilization {float(utilization):.0%}"
        self.method = (
            f"modeled: {devices} × TDP {self.tdp_w:g} W × {util_text} × elapsed time"
        )
        self._t0: float | None = None
        self._t_prev: float | None = None
        self._u_prev = 0.0
        self._device_j = 0.0  # energy of one device
        self._clamped: list[float] = []

    def _util(self) -> float:
        u = self.utilization
        if not callable(u):
            return float(u)
        value = float(u())
        if not math.isfinite(value):
            raise MeterError(f"utilization source returned {value!r}")
        if not 0.0 <= value <= 1.0:
            self._clamped.append(value)
            value = min(1.0, max(0.0, value))
        return value

    def start(self) -> None:
        self._clamped = []
        self._t0 = self._t_prev = self._clock()
        self._u_prev = self._util()
        self._device_j = 0.0

    def _advance(self) -> float:
        if self._t0 is None or self._t_prev is None:
            raise MeterError("modeled meter read before start()")
        now = self._clock()
        if callable(self.utilization):
            u = self._util()
            self._device_j += self.tdp_w * 0.5 * (self._u_prev + u) * (now - self._t_prev)
            self._u_prev = u
        else:
            # constant utilization: exact, from the start
            self._device_j = self.tdp_w * float(self.utilization) * (now - self._t0)
        self._t_prev = now
        return now

    def poll(self) -> None:
        self._advance()

    def read(self) -> EnergyReading:
        now = self._advance()
        assert self._t0 is not None
        total = self.devices * self._device_j
        notes: list[str] = []
        if self.because:
            notes.append(f"modeled because: {self.because}")
        notes.append(
            "modeled, not measured: energy = devices × TDP × utilization × time; real power "
            "differs (idle draw, clocks, memory and host power are not in it)"
        )
        if self._clamped:
            notes.append(
                f"utilization source returned {len(self._clamped)} value(s) outside [0, 1] "
                f"(e.g. {self._clamped[0]!r}); they were clipped"
            )
        return EnergyReading(
            energy_j=total,
            by_domain={f"{self.domain_prefix}{i}": self._device_j for i in range(self.devices)},
            elapsed_s=now - self._t0,
            provenance=self.provenance,
            method=self.method,
            notes=notes,
        )

    def stop(self) -> EnergyReading:
        return self.read()
