"""The device catalog: accelerator specifications read from data files.

Every figure comes from a data file (the package's ``data/devices.toml`` and
the user's own ``*.toml`` files) and carries its source, date and provenance;
no device figure is written in code. The layout of the files is documented in
``data/README.md``.

>>> dev = get_device("a100-80gb")
>>> dev.peak_for("bf16")          # dense FLOP/s
312000000000000.0
>>> dev.sources["peak_flops.bf16"]["source"]
'NVIDIA A100 Tensor Core GPU datasheet, A100 SXM columns (40GB and 80GB)'
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..core.datafiles import load_file, package_data_dir, user_data_dirs
from ..core.errors import UserError, suggest
from ..core.precision import precision as precision_row
import json

SCHEMA = "mlfootprint.hardware/1"

#: Every dtype a device may list a peak for, in display order.
DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")


KINDS: tuple[str, ...] = ("gpu", "tpu", "accelerator", "cpu")
PROVENANCES: tuple[str, ...] = ("published", "measured", "assumed", "modeled")
PROFILE_ID = "this"

_DTYPE_ALIASES = {
    "float64": "fp64", "double": "fp64", "f64": "fp64",
    "float32": "fp32", "float": "fp32", "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "f16": "fp16",
    "float8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "e4m3": "fp8", "e5m2": "fp8",
    "qint8": "int8", "i8": "int8",
}


# --------------------------------------------------------------------------- units

# dimension -> (base unit, {unit: factor to base})
_UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "flops": ("FLOP/s", {
        "FLOP/s": 1.0, "GFLOP/s": 1e9, "TFLOP/s": 1e12, "PFLOP/s": 1e15,
        "OP/s": 1.0, "GOP/s": 1e9, "TOP/s": 1e12, "POP/s": 1e15,
    }),
    "bytes": ("B", {
        "B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
        "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40,
    }),
    "bandwidth": ("B/s", {
        "B/s": 1.0, "kB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "TB/s": 1e12,
        "MiB/s": 2.0**20, "GiB/s": 2.0**30,
        "Mb/s": 1e6 / 8, "Gb/s": 1e9 / 8, "Tb/s": 1e12 / 8,
    }),
    "power": ("W", {"W": 1.0, "kW": 1e3}),
    "price": ("USD/h", {"USD/h": 1.0}),
    "time": ("s", {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}),
    "count": ("", {"": 1.0}),
}


@dataclass(frozen=True)
class _Field:
    key: str        # name in the data file
    attr: str       # Device attribute, and the key in Device.sources
    dim: str        # dimension (selects the allowed units)
    required: bool = False
    integer: bool = False
    allow_zero: bool = False


_FIELDS: tuple[_Field, ...] = (
    _Field("memory", "memory_bytes", "bytes", required=True, integer=True),
    _Field("memory_bandwidth", "memory_bandwidth_bytes_per_s", "bandwidth", required=True),
    _Field("intra_node_bandwidth", "intra_node_bandwidth_bytes_per_s", "bandwidth"),
    _Field("inter_node_bandwidth", "inter_node_bandwidth_bytes_per_s", "bandwidth"),
    _Field("devices_per_node", "devices_per_node", "count", integer=True),
    _Field("tdp", "tdp_w", "power"),
    _Field("price", "price_usd_per_hour", "price", allow_zero=True),
    _Field("per_op_overhead", "per_op_overhead_s", "time"),
)
_FIELD_BY_KEY = {f.key: f for f in _FIELDS}
_PEAK = _Field("peak_flops", "peak_flops", "flops")
_TEXT_KEYS = ("name", "vendor", "kind")
_DEVICE_KEYS = ("base", *_TEXT_KEYS, "peak_flops", *(f.key for f in _FIELDS))
_VALUE_KEYS = ("value", "unit", "ref", "source", "url", "date", "note", "provenance")
_REF_KEYS = ("title", "url", "date")
_TOP_KEYS = ("schema", "generator", "refs", "devices")

# JSON keys carry the unit (DESIGN: "_bytes", "_s", ...); peak_flops is FLOP/s.
_JSON_PEAK = "peak_flop_per_s"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


# --------------------------------------------------------------------------- the Device


@dataclass(frozen=True)
class Device:
    """One accelerator (or this machine, after calibration), in base units.

    ``sources`` maps a field path (an attribute name, or ``peak_flops.<dtype>``)
    to ``{"source", "date", "provenance"}`` plus optional ``"url"`` and
    ``"note"``. ``origin`` is the data file the device was (last) defined in.
    The dict attributes must not be mutated.
    """

    id: str
    name: str
    vendor: str
    kind: str
    peak_flops: dict[str, float]
    memory_bytes: int
    memory_bandwidth_bytes_per_s: float
    intra_node_bandwidth_bytes_per_s: float | None = None
    inter_node_bandwidth_bytes_per_s: float | None = None
    devices_per_node: int | None = None
    tdp_w: float | None = None
    price_usd_per_hour: float | None = None
    per_op_overhead_s: float | None = None
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    origin: str = ""

    def __hash__(self) -> int:  # the dict fields are not hashable; ids are unique per catalog
        return hash((self.id, self.origin))

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The dtypes this device has a peak for, in canonical order."""
        return tuple(d for d in DTYPES if d in self.peak_flops)

    def peak_for(self, dtype: str) -> float:
        """Dense peak FLOP/s (OP/s for int8) for ``dtype``; UserError if the device has none."""
        d = normalize_dtype(dtype)
        if d not in self.peak_flops:
            have = ", ".join(self.dtypes) or "none"
            raise UserError(
                f"{self.name} ({self.id}) has no {d} peak; it has: {have}. "
                f"Pick a precision it supports, or add a peak for {d} in a user hardware file "
                f"(see: mlfootprint hardware show {self.id})"
            )
        return self.peak_flops[d]

    def source_of(self, path: str) -> str:
        """One line saying where a figure comes from, e.g. 'published: NVIDIA A100 datasheet (2021-06)'."""
        s = self.sources.get(path)
        if not s:
            return "unknown source"
        date = f" ({s['date']})" if s.get("date") else ""
        return f"{s.get('provenance', 'published')}: {s.get('source', '?')}{date}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, base units, the unit in each key; absent figures are omitted."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "vendor": self.vendor, "kind": self.kind}
        out[_JSON_PEAK] = {d: self.peak_flops[d] for d in self.dtypes}
        for f in _FIELDS:
            v = getattr(self, f.attr)
            if v is not None:
                out[f.attr] = v
        out["sources"] = {_json_path(k): dict(v) for k, v in sorted(self.sources.items())}
        out["origin"] = self.origin
        return out


def _json_path(path: str) -> str:
    return _JSON_PEAK + path[len("peak_flops"):] if path.startswith("peak_flops.") else path


# --------------------------------------------------------------------------- names


def normalize_dtype(dtype: str) -> str:
    """Canonical dtype name ('bfloat16', 'torch.bfloat16' → 'bf16'); UserError if unknown."""
    d = str(dtype).strip().lower()
    if d.startswith("torch."):
        d = d[len("torch."):]
    d = _DTYPE_ALIASES.get(d, d)
    if d not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}'; known: {', '.join(DTYPES)}.{suggest(str(dtype), DTYPES)}")
    return d


def dtype_for_precision(precision: str) -> str:
    """The dtype whose peak applies to a workload precision (fp8-mixed → fp8, bf16-mixed → bf16, …)."""
    return precision_row(str(precision).strip().lower()).peak_dtype


def normalize_id(device_id: str) -> str:
    return str(device_id).strip().lower().replace("_", "-")


# --------------------------------------------------------------------------- loading


def catalog_files() -> list[Path]:
    """The files the catalog is built from, in the order they are applied (later wins)."""
    files = [package_data_dir("hardware") / "devices.toml"]
    for d in user_data_dirs("hardware"):
        if d.is_dir():
            files.extend(p for p in sorted(d.glob("*.toml")) if p.is_file() and not p.name.startswith("."))
    return files


def profile_path() -> Path:
    """Where the calibrated profile of this machine lives."""
    return user_data_dirs("hardware")[-1] / f"{PROFILE_ID}.toml"


_cache: dict[tuple, dict[str, Device]] = {}


def load_devices() -> dict[str, Device]:
    """Every known device by id: the package catalog merged with the user's files.

    Files are applied in order — the package file, then each folder of
    ``user_data_dirs("hardware")`` (``*.toml``, sorted by name) — and a later
    definition of an id replaces the earlier one, unless it says
    ``base = "<id>"``, in which case it starts from that device and overrides
    only the fields it gives.
    """
    files = catalog_files()
    key = tuple(_stamp(p) for p in files)
    cached = _cache.get(key)
    if cached is None:
        devices: dict[str, Device] = {}
        refs: dict[str, dict[str, str]] = {}
        for i, path in enumerate(files):
            _apply_file(path, devices, refs, strict=(i == 0))
        _cache.clear()
        _cache[key] = cached = devices
    return dict(cached)


def load_devices_file(path: str | Path, base_devices: dict[str, Device] | None = None) -> dict[str, Device]:
    """The devices defined in one file (bases resolved against ``base_devices``)."""
    devices = dict(base_devices or {})
    defined: list[str] = []
    _apply_file(Path(path), devices, {}, strict=False, defined=defined)
    return {k: devices[k] for k in defined}


def get_device(device_id: str) -> Device:
    """A device by id (case-insensitive); ``"this"`` is the calibrated profile of this machine."""
    did = normalize_id(device_id)
    devices = load_devices()
    if did in devices:
        return devices[did]
    if did == PROFILE_ID:
        raise UserError(
            f"this machine has no calibrated profile (looked for {profile_path()}); "
            "run: mlfootprint hardware calibrate"
        )
    raise UserError(
        f"unknown hardware '{device_id}'.{suggest(did, devices)} "
        "See the list with: mlfootprint hardware list"
    )


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
        return (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(path), -1, -1)


class _Bad(Exception):
    """A problem inside one file; turned into a UserError naming the file."""


def _apply_file(
    path: Path,
    devices: dict[str, Device],
    refs: dict[str, dict[str, str]],
    *,
    strict: bool,
    defined: list[str] | None = None,
) -> None:
    data = load_file(path)  # UserError naming the file on bad syntax
    try:
        if not isinstance(data, dict):
            raise _Bad("the top level must be a table")
        _check_keys(data, _TOP_KEYS, "top-level key")
        schema = data.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise _Bad(f"schema is '{schema}', this version reads '{SCHEMA}'")
        file_refs = data.get("refs", {})
        if not isinstance(file_refs, dict):
            raise _Bad("'refs' must be a table of [refs.<id>] tables")
        for rid, ref in file_refs.items():
            refs[rid] = _parse_ref(rid, ref)
        raw_devices = data.get("devices", {})
        if not isinstance(raw_devices, dict):
            raise _Bad("'devices' must be a table of [devices.<id>] tables")
        user_date = None if strict else _file_date(path)
        seen: dict[str, str] = {}
        for raw_id, raw in raw_devices.items():
            did = normalize_id(raw_id)
            if not _ID_RE.match(did):
                raise _Bad(f"device id '{raw_id}' must be lowercase letters, digits, '-', '.' or '+'")
            if did in seen:
                raise _Bad(f"device '{did}' is defined twice in this file (as '{seen[did]}' and '{raw_id}')")
            seen[did] = raw_id
            try:
                devices[did] = _build_device(did, raw, devices, refs, path, strict, user_date)
            except _Bad as exc:
                raise _Bad(f"device '{raw_id}': {exc}") from None
            if defined is not None:
                defined.append(did)
    except _Bad as exc:
        raise UserError(f"hardware file {path}: {exc}") from None


def _file_date(path: Path) -> str:
    try:
        return _dt.date.fromtimestamp(path.stat().st_mtime).isoformat()
    except OSError:  # pragma: no cover - the file was just read
        return _dt.date.today().isoformat()


def _check_keys(table: dict, allowed: tuple[str, ...], what: str) -> None:
    for k in table:
        if k not in allowed:
            raise _Bad(f"unknown {what} '{k}'.{suggest(k, allowed)} Allowed: {', '.join(allowed)}")


def _parse_ref(rid: str, ref: Any) -> dict[str, str]:
    if not isinstance(ref, dict):
        raise _Bad(f"refs.{rid} must be a table with title, date and optional url")
    _check_keys(ref, _REF_KEYS, f"key in refs.{rid}")
    if not isinstance(ref.get("title"), str) or not ref["title"].strip():
        raise _Bad(f"refs.{rid} needs a title")
    date = ref.get("date")
    if not isinstance(date, str) or not _DATE_RE.match(date):
        raise _Bad(f"refs.{rid} needs a date as \"YYYY\", \"YYYY-MM\" or \"YYYY-MM-DD\"")
    out = {"source": ref["title"].strip(), "date": date}
    if ref.get("url"):
        out["url"] = str(ref["url"])
    return out


def _build_device(
    did: str,
    raw: Any,
    devices: dict[str, Device],
    refs: dict[str, dict[str, str]],
    path: Path,
    strict: bool,
    user_date: str | None,
) -> Device:
    if not isinstance(raw, dict):
        raise _Bad("must be a table")
    _check_keys(raw, _DEVICE_KEYS, "field")

    values: dict[str, Any] = {}
    peaks: dict[str, float] = {}
    sources: dict[str, dict[str, str]] = {}
    base_id = raw.get("base")
    if base_id is not None:
        bid = normalize_id(str(base_id))
        if bid not in devices:
            raise _Bad(f"base '{base_id}' is not a known device.{suggest(bid, devices)}")
        base = devices[bid]
        values = {a: getattr(base, a) for a in ("name", "vendor", "kind", *(f.attr for f in _FIELDS))}
        peaks = dict(base.peak_flops)
        sources = {k: dict(v) for k, v in base.sources.items()}

    for key in _TEXT_KEYS:
        if key in raw:
            v = raw[key]
            if not isinstance(v, str) or not v.strip():
                raise _Bad(f"'{key}' must be a non-empty string")
            values[key] = v.strip()
    if "kind" in values and values["kind"] not in KINDS:
        raise _Bad(f"kind '{values['kind']}' is not one of: {', '.join(KINDS)}.{suggest(values['kind'], KINDS)}")

    if "peak_flops" in raw:
        table = raw["peak_flops"]
        if not isinstance(table, dict):
            raise _Bad("'peak_flops' must be a table of dtype = { value, unit, source, date }")
        for dtype, entry in table.items():
            if dtype not in DTYPES:
                raise _Bad(
                    f"peak_flops has unknown dtype '{dtype}'.{suggest(dtype, DTYPES)} Known: {', '.join(DTYPES)}"
                )
            val, src = _parse_value(f"peak_flops.{dtype}", entry, _PEAK, refs, path, strict, user_date)
            peaks[dtype] = val
            sources[f"peak_flops.{dtype}"] = src

    for f in _FIELDS:
        if f.key in raw:
            val, src = _parse_value(f.key, raw[f.key], f, refs, path, strict, user_date)
            values[f.attr] = val
            sources[f.attr] = src

    missing = [k for k in _TEXT_KEYS if not values.get(k)]
    missing += [f.key for f in _FIELDS if f.required and values.get(f.attr) is None]
    if not peaks:
        missing.append("peak_flops (at least one dtype)")
    if missing:
        hint = "" if base_id is not None else " (or start from a known device with base = \"<id>\")"
        raise _Bad(f"missing {', '.join(missing)}{hint}")

    return Device(
        id=did,
        name=values["name"],
        vendor=values["vendor"],
        kind=values["kind"],
        peak_flops={d: peaks[d] for d in DTYPES if d in peaks},
        memory_bytes=values["memory_bytes"],
        memory_bandwidth_bytes_per_s=values["memory_bandwidth_bytes_per_s"],
        intra_node_bandwidth_bytes_per_s=values.get("intra_node_bandwidth_bytes_per_s"),
        inter_node_bandwidth_bytes_per_s=values.get("inter_node_bandwidth_bytes_per_s"),
        devices_per_node=values.get("devices_per_node"),
        tdp_w=values.get("tdp_w"),
        price_usd_per_hour=values.get("price_usd_per_hour"),
        per_op_overhead_s=values.get("per_op_overhead_s"),
        sources=sources,
        origin=_origin(path),
    )


def _origin(path: Path) -> str:
    """A data file as a reader can find it: the bundled catalog by its place in the package."""
    bundled = package_data_dir("hardware") / "devices.toml"
    return "mlfootprint/hardware/data/devices.toml" if Path(path) == bundled else str(path)


def _parse_value(
    where: str,
    entry: Any,
    f: _Field,
    refs: dict[str, dict[str, str]],
    path: Path,
    strict: bool,
    user_date: str | None,
) -> tuple[Any, dict[str, str]]:
    base_unit, units = _UNITS[f.dim]
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        if strict:
            raise _Bad(f"{where} needs a source: write {{ value = {entry}, source = \"...\", date = \"YYYY-MM\" }}")
        entry = {"value": entry}
    if not isinstance(entry, dict):
        raise _Bad(f"{where} must be a number or a table {{ value, unit, source, date }}")
    _check_keys(entry, _VALUE_KEYS, f"key in {where}")

    value = entry.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{where} needs a numeric 'value'")
    unit = entry.get("unit", base_unit)
    if unit not in units:
        shown = ", ".join(u for u in units if u) or "none"
        raise _Bad(f"{where} has unit '{unit}', which is not a unit of this field; use one of: {shown}")
    # Decimal keeps "989.4 TFLOP/s" equal to the literal 989.4e12 (no binary rounding twice).
    value = float(Decimal(repr(value)) * Decimal(repr(units[unit])))
    if not math.isfinite(value) or value < 0 or (value == 0 and not f.allow_zero):
        raise _Bad(f"{where} must be a positive finite number, got {entry.get('value')}")
    if f.integer:
        if abs(value - round(value)) > 1e-6 * max(1.0, abs(value)):
            raise _Bad(f"{where} must be a whole number, got {entry.get('value')} {unit}".rstrip())
        value = int(round(value))

    src: dict[str, str] = {}
    if "ref" in entry:
        rid = entry["ref"]
        if rid not in refs:
            raise _Bad(f"{where} cites ref '{rid}', which no [refs.{rid}] table defines.{suggest(str(rid), refs)}")
        src.update(refs[rid])
    if "source" in entry:
        if not isinstance(entry["source"], str) or not entry["source"].strip():
            raise _Bad(f"{where}: 'source' must be a non-empty string")
        src["source"] = entry["source"].strip()
    if "url" in entry:
        src["url"] = str(entry["url"])
    if "date" in entry:
        d = entry["date"]
        d = d.isoformat() if isinstance(d, (_dt.date, _dt.datetime)) else d
        if not isinstance(d, str) or not _DATE_RE.match(d):
            raise _Bad(f"{where}: date must be \"YYYY\", \"YYYY-MM\" or \"YYYY-MM-DD\"")
        src["date"] = d
    provenance = entry.get("provenance", "published" if src.get("source") else "assumed")
    if provenance not in PROVENANCES:
        raise _Bad(f"{where}: provenance '{provenance}' is not one of: {', '.join(PROVENANCES)}")
    if "source" not in src:
        if strict:
            raise _Bad(f"{where} needs a source (ref = \"<ref-id>\" or source = \"...\")")
        src["source"] = f"user file {path}"
    if "date" not in src:
        if strict:
            raise _Bad(f"{where} needs a date")
        src["date"] = user_date or _dt.date.today().isoformat()
    src["provenance"] = provenance
    if entry.get("note"):
        src["note"] = str(entry["note"])
    return value, src


# --------------------------------------------------------------------------- writing


def device_to_toml(device: Device, *, generator: str | None = None, header: str = "") -> str:
    """One device in the data-file layout (base units, every value with its source)."""
    lines: list[str] = []
    for text in header.splitlines():
        lines.append(f"# {text}".rstrip())
    lines.append(f"schema = {_toml_str(SCHEMA)}")
    if generator:
        lines.append(f"generator = {_toml_str(generator)}")
    lines.append("")
    lines.append(f"[devices.{device.id}]")
    for key in _TEXT_KEYS:
        lines.append(f"{key} = {_toml_str(getattr(device, key))}")
    for f in _FIELDS:
        v = getattr(device, f.attr)
        if v is not None:
            lines.append(f"{f.key} = {_toml_value(v, _UNITS[f.dim][0], device.sources.get(f.attr, {}))}")
    lines.append("")
    lines.append(f"[devices.{device.id}.peak_flops]")
    for d in device.dtypes:
        lines.append(f"{d} = {_toml_value(device.peak_flops[d], 'FLOP/s', device.sources.get(f'peak_flops.{d}', {}))}")
    return "\n".join(lines) + "\n"


def _toml_str(s: str) -> str:
    return json.dumps(str(s), ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _toml_value(v: float | int, unit: str, src: dict[str, str]) -> str:
    num = str(v) if isinstance(v, int) else repr(float(v))
    parts = [f"value = {num}"]
    if unit:
        parts.append(f"unit = {_toml_str(unit)}")
    for k in ("source", "url", "date", "provenance", "note"):
        if src.get(k):
            parts.append(f"{k} = {_toml_str(src[k])}")
    return "{ " + ", ".join(parts) + " }"
