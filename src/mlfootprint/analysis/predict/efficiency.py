"""Achievable-efficiency factors: what fraction of a device's peaks real kernels reach.

The defaults live in ``data/efficiency.toml`` (each with a provenance and a
source); users override them with their own files or ``--efficiency
NAME=VALUE``. Every prediction lists the factors it used in its assumptions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.datafiles import load_file, package_data_dir, user_data_dirs
from ...core.errors import UserError, suggest
from ...core.units import plain_number
from . import opcurves

SCHEMA = "mlfootprint.efficiency/1"

#: Factors that are fractions (0, 1]; the others are seconds or bytes/s.
FRACTIONS = ("matmul", "attention", "conv", "vector", "memory_bandwidth", "network")


@dataclass(frozen=True)
class Factor:
    name: str
    value: float
    provenance: str  # assumed | published | measured | given
    source: str
    note: str = ""


@dataclass
class Efficiency:
    """The factors one prediction uses, by name."""

    factors: dict[str, Factor] = field(default_factory=dict)
    measured_device: bool = False
    curves: dict[str, list[list[float]]] | None = None  # per-op-class rate curves of a calibrated device (opcal)
    curves_source: str = ""

    def __getitem__(self, name: str) -> float:
        return self.factors[name].value

    def get(self, name: str, default: float | None = None) -> float | None:
        f = self.factors.get(name)
        return default if f is None else f.value

    def describe(self, names: list[str] | tuple[str, ...] | None = None) -> list[str]:
        """One line per factor: 'matmul = 0.75 (assumed: …; source)'."""
        out = []
        for name in names or self.factors:
            f = self.factors.get(name)
            if f is None:
                continue
            out.append(f"efficiency factor {name} = {plain_number(f.value)} ({f.provenance}; {f.note}; source: {f.source})")
        if self.curves:
            out.append("per-op-class rates measured on this machine at several sizes "
                       f"({', '.join(sorted(self.curves))}; {self.curves_source}): fp32 operators are rated by "
                       "interpolating their class's rate at their size (FLOPs, or bytes moved), log-log, flat "
                       "beyond the measured sizes; they replace the matching factors above")
        return out

    def to_dict(self) -> dict[str, float]:
        return {k: f.value for k, f in self.factors.items()}


def _files() -> list[Path]:
    files = [package_data_dir("analysis.predict") / "efficiency.toml"]
    for d in user_data_dirs("predict"):
        if d.is_dir():
            files.extend(p for p in sorted(d.glob("*.toml")) if p.is_file() and not p.name.startswith("."))
    return files


def _parse(path: Path, factors: dict[str, Factor], measured: dict[str, float], refs: dict[str, str]) -> None:
    data = load_file(path)
    if not isinstance(data, dict):
        raise UserError(f"efficiency file {path}: the top level must be a table")
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise UserError(f"efficiency file {path}: schema is '{schema}', this version reads '{SCHEMA}'")
    for rid, ref in (data.get("refs") or {}).items():
        if not isinstance(ref, dict) or "title" not in ref:
            raise UserError(f"efficiency file {path}: refs.{rid} needs a title")
        refs[rid] = f"{ref['title']} ({ref.get('date', 'undated')})"
    for name, entry in (data.get("factors") or {}).items():
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entry = {"value": entry, "provenance": "given", "source": str(path)}
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), (int, float)):
            raise UserError(f"efficiency file {path}: factors.{name} needs a numeric value")
        source = refs.get(entry.get("ref", ""), entry.get("source", str(path)))
        factors[name] = _checked(Factor(name, float(entry["value"]), str(entry.get("provenance", "given")),
                                        source, str(entry.get("note", ""))), str(path))
    for name, value in (data.get("measured") or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"efficiency file {path}: measured.{name} must be a number")
        measured[name] = float(value)


def _checked(f: Factor, where: str) -> Factor:
    if f.name in FRACTIONS:
        low = 0.0 if f.name.startswith("overlap") else 1e-9
        if not (low <= f.value <= 1.0):
            raise UserError(f"{where}: efficiency factor {f.name} must be between {low:g} and 1, got {f.value:g}")
    elif f.value < 0:
        raise UserError(f"{where}: efficiency factor {f.name} must not be negative, got {f.value:g}")
    return f


_cache: dict[tuple, tuple[dict[str, Factor], dict[str, float]]] = {}


def _load() -> tuple[dict[str, Factor], dict[str, float]]:
    files = _files()
    key = tuple((str(p), p.stat().st_mtime_ns if p.exists() else -1) for p in files)
    if key not in _cache:
        factors: dict[str, Factor] = {}
        measured: dict[str, float] = {}
        refs: dict[str, str] = {}
        for p in files:
            _parse(p, factors, measured, refs)
        _cache.clear()
        _cache[key] = (factors, measured)
    return _cache[key]


def parse_overrides(text: str | dict[str, float] | None) -> dict[str, float]:
    """'matmul=0.6,network=0.7' → {'matmul': 0.6, 'network': 0.7}; UserError on anything else."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): float(v) for k, v in text.items()}
    out: dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        try:
            if not eq:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--efficiency expects NAME=VALUE[,NAME=VALUE], got '{part}' "
                            f"(e.g. --efficiency matmul=0.6,network=0.7)") from None
    return out


def efficiency_for(device: Any, overrides: str | dict[str, float] | None = None) -> Efficiency:
    """The factors for one device: defaults, the [measured] set for a calibrated profile, then overrides.

    ``overrides``: 'name=value,…', a dict, or a ready :class:`Efficiency` (returned as is).
    """
    if isinstance(overrides, Efficiency):
        return overrides
    defaults, measured_set = _load()
    factors = dict(defaults)
    measured = is_measured(device)
    if measured:
        for name, value in measured_set.items():
            base = factors.get(name)
            factors[name] = Factor(name, value, "measured",
                                   "the calibrated profile's figures are achieved rates (mlfootprint hardware calibrate)",
                                   "no derating of a measured figure" if base is None else
                                   f"replaces the default {plain_number(base.value)}: the calibrated rate is already achieved")
    for name, value in parse_overrides(overrides).items():
        if name not in factors:
            raise UserError(f"unknown efficiency factor '{name}'.{suggest(name, factors)} Known: {', '.join(sorted(factors))}")
        factors[name] = _checked(Factor(name, value, "given", "--efficiency", "set by the user"), "--efficiency")
    curves = None
    source = ""
    if measured and getattr(device, "id", "") == "this":
        curves = opcurves.load()
        source = str(opcurves.curves_path())
    return Efficiency(factors, measured, curves, source)


def is_measured(device: Any) -> bool:
    """Whether every peak of ``device`` was measured here (a calibrated profile), none published."""
    sources = getattr(device, "sources", {}) or {}
    peaks = [k for k in sources if k.startswith("peak_flops.")]
    return bool(peaks) and all(sources[k].get("provenance") == "measured" for k in peaks)
