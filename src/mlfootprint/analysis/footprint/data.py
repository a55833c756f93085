"""Footprint catalogs: grid intensity, facility overheads, embodied carbon.

The three data files in ``footprint/data/`` (``grid.toml``, ``facilities.toml``,
``embodied.toml``) are loaded, validated and merged with the user's own files
(``grid*.toml``, ``facilities*.toml``, ``embodied*.toml`` in
:func:`mlfootprint.core.datafiles.user_data_dirs` ``("footprint")``); a user entry
replaces the packaged entry of the same key. Every value carries its source
and year; a file that breaks this is rejected with a one-line error.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.datafiles import load_file, package_data_dir, user_data_dirs
from ...core.errors import UserError, suggest

KINDS = ("grid", "facilities", "embodied")
_TABLES = {"grid": "regions", "facilities": "facilities", "embodied": "devices"}


@dataclass(frozen=True)
class Sourced:
    """One number from a data file, with its citation and data year."""

    value: float
    source: str
    year: int
    basis: str = "published"  # "published" or "estimate"
    derivation: str = ""

    def cite(self) -> str:
        text = f"{self.source} ({self.year})"
        if self.basis == "estimate":
            text = f"estimate: {self.derivation}; from {text}" if self.derivation else f"estimate from {text}"
        return text


@dataclass(frozen=True)
class GridRegion:
    key: str
    name: str
    kind: str
    intensity: Sourced  # gCO2e/kWh, location-based
    water: Sourced | None  # L/kWh of electricity, None where no source exists
    via: str | None = None  # the grid a cloud region is mapped to

    @property
    def is_cloud(self) -> bool:
        return self.kind == "cloud-region"


@dataclass(frozen=True)
class Facility:
    key: str
    name: str
    pue: Sourced
    wue: Sourced | None  # L per IT kWh, on site; None where no source exists


@dataclass(frozen=True)
class EmbodiedDevice:
    key: str
    name: str
    accelerator_kg: Sourced
    server_share_kg: Sourced


@dataclass(frozen=True)
class FootprintData:
    regions: Mapping[str, GridRegion]
    region_aliases: Mapping[str, str]
    default_region: str
    facilities: Mapping[str, Facility]
    facility_aliases: Mapping[str, str]
    default_facility: str
    cloud_facility: str
    devices: Mapping[str, EmbodiedDevice]
    lifespan_years: Sourced
    lifetime_utilization: Sourced

    # -- look-ups ------------------------------------------------------------
    def region(self, name: str) -> GridRegion:
        key = _norm(name)
        key = self.region_aliases.get(key, key)
        if key in self.regions:
            return self.regions[key]
        for region in self.regions.values():  # full names work too: "Germany", "United States"
            if _norm(region.name) == key:
                return region
        names = list(self.regions) + list(self.region_aliases)
        raise UserError(
            f"unknown region {name!r}.{suggest(key, names)} "
            "See 'mlfootprint footprint --list-regions', or pass --intensity G (gCO2e/kWh)"
        )

    def facility(self, name: str) -> Facility:
        key = _norm(name)
        key = self.facility_aliases.get(key, key)
        if key in self.facilities:
            return self.facilities[key]
        names = list(self.facilities) + list(self.facility_aliases)
        raise UserError(
            f"unknown facility type {name!r}.{suggest(key, names)} "
            f"Known types: {', '.join(sorted(self.facilities))}; or pass --pue P"
        )

    def embodied(self, device_id: str) -> EmbodiedDevice | None:
        return self.devices.get(_norm(device_id))


def _norm(name: str) -> str:
    return " ".join(str(name).split()).lower()


# -- loading -------------------------------------------------------------------

def load_data(extra_dirs: Iterable[str | Path] = ()) -> FootprintData:
    """The packaged catalogs merged with the user's files (cached per set of folders)."""
    dirs = tuple(str(d) for d in (*extra_dirs, *user_data_dirs("footprint")))
    return _load_cached(dirs)


def clear_cache() -> None:
    _load_cached.cache_clear()


@functools.lru_cache(maxsize=8)
def _load_cached(dirs: tuple[str, ...]) -> FootprintData:
    raw: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        merged: dict[str, Any] = {"defaults": {}, "sources": {}, _TABLES[kind]: {}}
        files = [package_data_dir("analysis.footprint") / f"{kind}.toml"]
        for d in dirs:
            folder = Path(d)
            if folder.is_dir():
                files.extend(sorted(p for p in folder.iterdir()
                                    if p.name.startswith(kind) and p.suffix in (".toml", ".json")))
        for path in files:
            _merge(merged, load_file(path), path, _TABLES[kind])
        raw[kind] = merged
    return _build(raw)


def _merge(into: dict[str, Any], data: Any, path: Path, table: str) -> None:
    if not isinstance(data, dict):
        raise UserError(f"data file {path} must be a table of tables ({table}, sources, defaults)")
    for section in ("defaults", "sources", table):
        block = data.get(section, {})
        if not isinstance(block, dict):
            raise UserError(f"data file {path}: [{section}] must be a table")
        for key, value in block.items():
            k = _norm(key) if section == table else key
            if section == table:
                if not isinstance(value, dict):
                    raise UserError(f"data file {path}: [{table}.{key}] must be a table")
                value = {**value, "_file": str(path)}
            into[section][k] = value
    unknown = set(data) - {"defaults", "sources", table}
    if unknown:
        raise UserError(f"data file {path}: unknown table(s) {', '.join(sorted(unknown))}; "
                        f"expected [{table}.<key>], [sources] and [defaults]")


def _sourced(entry: Any, where: str, sources: Mapping[str, str], *, fraction: bool = False) -> Sourced:
    if not isinstance(entry, dict) or not {"value", "source", "year"} <= set(entry):
        raise UserError(f"{where} must be a table {{ value = ..., source = ..., year = ... }}")
    value, source, year = entry["value"], entry["source"], entry["year"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"{where}: value must be a finite number >= 0, got {value!r}")
    if fraction and not 0 < value <= 1:
        raise UserError(f"{where}: value must be in (0, 1], got {value!r}")
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"{where}: source must be a non-empty string")
    if isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2100:
        raise UserError(f"{where}: year must be an integer year, got {year!r}")
    basis = entry.get("basis", "published")
    if basis not in ("published", "estimate"):
        raise UserError(f"{where}: basis must be 'published' or 'estimate', got {basis!r}")
    derivation = str(entry.get("derivation", ""))
    if basis == "estimate" and not derivation:
        raise UserError(f"{where}: an estimate needs a 'derivation' saying how it was derived")
    return Sourced(float(value), sources.get(source, source), year, basis, derivation)


def _aliases(entry: dict[str, Any], where: str) -> list[str]:
    names = entry.get("aliases", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{where}: aliases must be a list of strings")
    return [_norm(n) for n in names]


def _build(raw: dict[str, dict[str, Any]]) -> FootprintData:
    # Grid regions: direct entries first, then cloud regions mapped with grid = "<key>".
    g = raw["grid"]
    gsrc = g["sources"]
    regions: dict[str, GridRegion] = {}
    region_aliases: dict[str, str] = {}
    mapped: list[tuple[str, dict[str, Any], str]] = []
    for key, entry in g["regions"].items():
        where = f"data file {entry['_file']}: region {key!r}"
        for alias in _aliases(entry, where):
            region_aliases[alias] = key
        name = str(entry.get("name", key))
        kind = str(entry.get("kind", "grid-region"))
        if "grid" in entry:
            mapped.append((key, entry, where))
            continue
        if "intensity" not in entry:
            raise UserError(f"{where} needs an intensity table (gCO2e/kWh) or grid = '<region key>'")
        water = _sourced(entry["water"], f"{where} water", gsrc) if "water" in entry else None
        regions[key] = GridRegion(key, name, kind, _sourced(entry["intensity"], f"{where} intensity", gsrc), water)
    for key, entry, where in mapped:
        target_key = _norm(entry["grid"])
        target_key = region_aliases.get(target_key, target_key)
        target = regions.get(target_key)
        if target is None:
            raise UserError(f"{where}: grid {entry['grid']!r} is not a region with its own intensity")
        name = str(entry.get("name", key))
        intensity = (_sourced(entry["intensity"], f"{where} intensity", gsrc) if "intensity" in entry
                     else _via(target.intensity, target))
        water = (_sourced(entry["water"], f"{where} water", gsrc) if "water" in entry
                 else (_via(target.water, target) if target.water else None))
        regions[key] = GridRegion(key, name, str(entry.get("kind", "cloud-region")), intensity, water, via=target.key)
    default_region = _norm(g["defaults"].get("region", "world"))
    if default_region not in regions:
        raise UserError(f"grid data: default region {default_region!r} is not defined")

    f = raw["facilities"]
    facilities: dict[str, Facility] = {}
    facility_aliases: dict[str, str] = {}
    for key, entry in f["facilities"].items():
        where = f"data file {entry['_file']}: facility {key!r}"
        for alias in _aliases(entry, where):
            facility_aliases[alias] = key
        if "pue" not in entry:
            raise UserError(f"{where} needs a pue table")
        pue = _sourced(entry["pue"], f"{where} pue", f["sources"])
        if pue.value < 1.0:
            raise UserError(f"{where}: pue must be >= 1.0, got {pue.value}")
        wue = _sourced(entry["wue"], f"{where} wue", f["sources"]) if "wue" in entry else None
        facilities[key] = Facility(key, str(entry.get("name", key)), pue, wue)
    default_facility = _norm(f["defaults"].get("facility", "colocation"))
    cloud_facility = _norm(f["defaults"].get("cloud_facility", "hyperscale"))
    for name in (default_facility, cloud_facility):
        if name not in facilities:
            raise UserError(f"facility data: default facility {name!r} is not defined")

    e = raw["embodied"]
    esrc = e["sources"]
    d = e["defaults"]
    for need in ("lifespan_years", "lifetime_utilization", "server_share_kg"):
        if need not in d:
            raise UserError(f"embodied data: [defaults] needs {need}")
    lifespan = _sourced(d["lifespan_years"], "embodied data: defaults.lifespan_years", esrc)
    if lifespan.value <= 0:
        raise UserError("embodied data: defaults.lifespan_years must be > 0")
    util = _sourced(d["lifetime_utilization"], "embodied data: defaults.lifetime_utilization", esrc, fraction=True)
    default_share = _sourced(d["server_share_kg"], "embodied data: defaults.server_share_kg", esrc)
    devices: dict[str, EmbodiedDevice] = {}
    for key, entry in e["devices"].items():
        where = f"data file {entry['_file']}: device {key!r}"
        if "accelerator_kg" not in entry:
            raise UserError(f"{where} needs an accelerator_kg table")
        share = (_sourced(entry["server_share_kg"], f"{where} server_share_kg", esrc)
                 if "server_share_kg" in entry else default_share)
        devices[key] = EmbodiedDevice(key, str(entry.get("name", key)),
                                      _sourced(entry["accelerator_kg"], f"{where} accelerator_kg", esrc), share)

    return FootprintData(regions, region_aliases, default_region, facilities, facility_aliases,
                         default_facility, cloud_facility, devices, lifespan, util)


def _via(value: Sourced, target: GridRegion) -> Sourced:
    return Sourced(value.value, f"grid of {target.name} [{target.key}]: {value.source}", value.year,
                   value.basis, value.derivation)
