"""CPU (and DRAM) energy from RAPL counters, read through Linux powercap sysfs.

Zones live under ``/sys/class/powercap``: ``intel-rapl:N`` is socket N's
package (``name`` = ``package-N``), ``intel-rapl:N:M`` its sub-zones
(``core``, ``uncore``, and on servers ``dram``). AMD CPUs use the same
``intel-rapl`` names. Each zone has ``energy_uj`` (a microjoule counter) and
``max_energy_range_uj`` (where that counter wraps back to zero).

What is summed: every package zone plus every ``dram`` zone. ``core`` and
``uncore`` are parts of the package and are not added again; DRAM is powered
separately and is not part of the package figure. A ``psys`` (platform) zone
overlaps the package and is ignored; ``intel-rapl-mmio`` zones duplicate
``intel-rapl`` ones and are not listed.

Wrap-around: a counter that reads lower than before has wrapped, and
``max_energy_range_uj`` is added. Only one wrap between two reads can be seen,
so reads must come more often than the counter wraps: about 262 kJ on most
Intel CPUs, i.e. every ~17 minutes at 250 W. A tracker calls :meth:`RaplMeter.poll`
each step; the meter also polls from a background thread every
``poll_interval_s`` seconds (60 by default; ``None`` turns the thread off). A
reading carries a note if two reads were further apart than the counter takes
to wrap at ``wrap_check_power_w``.

Since Linux 5.10 (CVE-2020-8694, "Platypus") ``energy_uj`` is readable by root
only; the meter then is unavailable and says how to grant access.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

from ...core.errors import UserError

from .base import MEASURED, BackgroundPolling, Clock, EnergyMeter, EnergyReading, MeterError, MeterUnavailable

__all__ = ["DEFAULT_ROOT", "RaplMeter", "RaplZone"]

DEFAULT_ROOT = "/sys/class/powercap"
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


def _read_text(path: str) -> str:
    """Read a sysfs file (a seam that tests replace to simulate errors)."""
    with open(path, encoding="ascii") as fh:
        return fh.read().strip()


@dataclass
class RaplZone:
    """One counted RAPL zone."""

    zone: str  # "intel-rapl:0" or "intel-rapl:0:2"
    name: str  # powercap name: "package-0", "dram"
    domain: str  # key in EnergyReading.by_domain: "package-0", "dram-0"
    path: str  # the zone's directory
    max_range_uj: int | None

    @property
    def energy_path(self) -> str:
        return os.path.join(self.path, "energy_uj")


def _permission_reason(path: str) -> str:
    return (
        f"cannot read {path}: permission denied. Since Linux 5.10 (CVE-2020-8694) RAPL "
        "energy counters are readable by root only; run as root, or grant read access "
        "with: sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
        "(lasts until reboot; a udev rule makes it permanent)"
    )


class RaplMeter(BackgroundPolling, EnergyMeter):
    """Package + DRAM energy of every CPU socket, from RAPL powercap counters."""

    name = "rapl"
    provenance = MEASURED

    def __init__(
        self,
        root: str | os.PathLike[str] = DEFAULT_ROOT,
        *,
        poll_interval_s: float | None = 60.0,
        wrap_check_power_w: float = 500.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if poll_interval_s is not None and poll_interval_s <= 0:
            raise UserError(f"RAPL poll interval must be positive seconds, got {poll_interval_s}")
        self.root = os.fspath(root)
        self.poll_interval_s = poll_interval_s
        self.wrap_check_power_w = wrap_check_power_w
        self._clock = clock
        self.zones, self._skipped = self._discover()
        # Probe every counter now, so an unreadable one is reported before a run.
        for z in self.zones:
            self._read_uj(z, probing=True)
        has_dram = any(z.name == "dram" for z in self.zones)
        self.method = "RAPL powercap package+dram" if has_dram else "RAPL powercap package"
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._thread_error: BaseException | None = None
        self._reset_state()

    # -- discovery -----------------------------------------------------------------
    def _discover(self) -> tuple[list[RaplZone], list[str]]:
        try:
            entries = sorted(os.listdir(self.root))
        except OSError as exc:
            raise MeterUnavailable(
                f"no RAPL powercap interface at {self.root} ({exc.strerror or exc}); RAPL needs "
                "Linux on an Intel or AMD CPU with the intel_rapl driver, and is usually "
                "hidden inside virtual machines and containers",
                meter=self.name,
            ) from None
        found: dict[str, str] = {}  # zone id -> directory
        for entry in entries:
            if _ZONE_RE.match(entry):
                found.setdefault(entry, os.path.join(self.root, entry))
        # Sub-zones may only be nested inside their package's directory.
        for zone, path in list(found.items()):
            top = _ZONE_RE.match(zone)
            if top is None or top.group(2) is not None:
                continue
            try:
                children = os.listdir(path)
            except OSError:
                continue
            for child in children:
                m = _ZONE_RE.match(child)
                if m and m.group(2) is not None and m.group(1) == top.group(1):
                    found.setdefault(child, os.path.join(path, child))
        if not found:
            raise MeterUnavailable(
                f"no RAPL zones (intel-rapl:*) under {self.root}; RAPL needs Linux on an Intel "
                "or AMD CPU with the intel_rapl driver loaded, and is usually hidden inside "
                "virtual machines and containers",
                meter=self.name,
            )

        def sort_key(z: str) -> tuple[int, int]:
            m = _ZONE_RE.match(z)
            assert m is not None
            return int(m.group(1)), -1 if m.group(2) is None else int(m.group(2))

        zones: list[RaplZone] = []
        skipped: list[str] = []
        package_domain: dict[str, str] = {}  # socket index -> package domain key
        used: set[str] = set()
        for zone in sorted(found, key=sort_key):
            path = found[zone]
            m = _ZONE_RE.match(zone)
            assert m is not None
            socket, sub = m.group(1), m.group(2)
            try:
                name = _read_text(os.path.join(path, "name"))
            except OSError:
                skipped.append(f"{zone} (name unreadable)")
                continue
            if sub is None and name.startswith("package"):
                domain = name
            elif name == "dram":
                domain = f"dram-{socket}"
                parent = package_domain.get(socket)
                if parent is not None and parent.startswith("package-"):
                    domain = "dram-" + parent[len("package-"):]
            else:
                # core / uncore (inside the package), psys (overlaps it), anything unknown.
                skipped.append(f"{zone} '{name}'")
                continue
            if domain in used:  # some kernels repeat names across dies
                domain = f"{domain}[{zone}]"
            used.add(domain)
            if sub is None:
                package_domain[socket] = domain
            max_range: int | None
            try:
                max_range = int(_read_text(os.path.join(path, "max_energy_range_uj")))
            except (OSError, ValueError):
                max_range = None
            zones.append(RaplZone(zone=zone, name=name, domain=domain, path=path, max_range_uj=max_range))
        if not any(z.name.startswith("package") for z in zones):
            raise MeterUnavailable(
                f"no RAPL package zone under {self.root} (found: {', '.join(sorted(found))})",
                meter=self.name,
            )
        return zones, skipped

    def _read_uj(self, zone: RaplZone, probing: bool = False) -> int:
        path = zone.energy_path
        try:
            return int(_read_text(path))
        except PermissionError:
            if probing:
                raise MeterUnavailable(_permission_reason(path), meter=self.name) from None
            raise MeterError(_permission_reason(path)) from None
        except (OSError, ValueError) as exc:
            if probing:
                raise MeterUnavailable(f"cannot read {path}: {exc}", meter=self.name) from None
            raise MeterError(f"cannot read {path}: {exc}") from exc

    # -- measuring -----------------------------------------------------------------
    def _reset_state(self) -> None:
        self._t0: float | None = None
        self._last_uj: dict[str, int] = {}
        self._acc_uj: dict[str, int] = {}
        self._last_t: float | None = None
        self._wraps: dict[str, int] = {}
        self._gap_notes: list[str] = []

    def start(self) -> None:
        self._stop_thread()
        with self._lock:
            self._reset_state()
            self._thread_error = None
            now = self._clock()
            for z in self.zones:
                self._last_uj[z.domain] = self._read_uj(z)
                self._acc_uj[z.domain] = 0
                self._wraps[z.domain] = 0
            self._t0 = self._last_t = now
        if self.poll_interval_s is not None:
            self._start_polling(self._update, self.poll_interval_s, "mlfootprint-rapl-poll")

    def _update(self) -> None:
        """Read every counter once and fold the increase into the totals."""
        with self._lock:
            if self._t0 is None:
                raise MeterError("RAPL meter read before start()")
            now = self._clock()
            gap = now - (self._last_t if self._last_t is not None else now)
            for z in self.zones:
                cur = self._read_uj(z)
                delta = cur - self._last_uj[z.domain]
                if delta < 0:
                    if z.max_range_uj is None:
                        raise MeterError(
                            f"{z.energy_path} went backwards and max_energy_range_uj is unknown"
                        )
                    delta += z.max_range_uj
                    self._wraps[z.domain] += 1
                if z.max_range_uj and self.wrap_check_power_w > 0:
                    wrap_s = z.max_range_uj / 1e6 / self.wrap_check_power_w
                    if gap > wrap_s and not self._gap_notes:
                        self._gap_notes.append(
                            f"two RAPL reads were {gap:.0f} s apart, longer than {z.domain}'s counter "
                            f"takes to wrap at {self.wrap_check_power_w:g} W ({wrap_s:.0f} s); a wrap "
                            "may have been missed and the energy undercounted: call poll() more often"
                        )
                self._acc_uj[z.domain] += delta
                self._last_uj[z.domain] = cur
            self._last_t = now

    def poll(self) -> None:
        self._update()

    def _reading(self) -> EnergyReading:
        with self._lock:
            assert self._t0 is not None and self._last_t is not None
            by_domain = {d: uj / 1e6 for d, uj in self._acc_uj.items()}
            notes = [
                "RAPL counts the whole CPU socket(s) and DRAM, including other processes",
            ]
            if not any(z.name == "dram" for z in self.zones):
                notes.append("no RAPL dram zone on this machine: DRAM energy is not included")
            if self._skipped:
                notes.append(
                    "zones not added (part of a package, or overlapping it): "
                    + ", ".join(self._skipped)
                )
            wraps = sum(self._wraps.values())
            if wraps:
                notes.append(f"{wraps} counter wrap-around(s) corrected")
            notes.extend(self._gap_notes)
            return EnergyReading(
                energy_j=sum(by_domain.values()),
                by_domain=by_domain,
                elapsed_s=self._last_t - self._t0,
                provenance=self.provenance,
                method=self.method,
                notes=notes,
            )

    def read(self) -> EnergyReading:
        if self._thread_error is not None:
            raise MeterError(f"RAPL background poll failed: {self._thread_error}") from self._thread_error
        self._update()
        return self._reading()

    def stop(self) -> EnergyReading:
        self._stop_thread()
        return self.read()

    def close(self) -> None:
        self._stop_thread()
