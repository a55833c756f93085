"""The JSON Schema of ``mlfootprint.report/1``, derived from the section dataclasses (``report/sections.py``).

The package ships the generated file (``report/data/report.schema.json``); a test regenerates it and fails
when it differs, so the file and the dataclasses cannot drift apart. To refresh it after changing a section:

    python -m mlfootprint.report.jsonschema > src/mlfootprint/report/data/report.schema.json
"""
from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Union

from ..core.datafiles import package_data_dir
from ..workload import (ATTENTION, CP_COMM, FUSION, GRAD_REDUCE, GRAD_REDUCE_DTYPE, MIXED_WEIGHTS, MODES, OFFLOAD,
                        OPTIMIZERS, PRECISIONS, QUANT, RECOMPUTE, SCHEDULES, TP_OVERLAP)
from .schema import PROVENANCE_KINDS, REPORT_VERBS, SCHEMA
from .sections import SECTIONS, Section
from . import sections as sections_module

SCHEMA_FILE = "report.schema.json"
_SCALARS: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}, bool: {"type": "boolean"},
    Any: {}, type(None): {"type": "null"},
}


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of one annotation (resolved type hints of the section dataclasses)."""
    if tp in _SCALARS:
        out = dict(_SCALARS[tp])
        if tp is float:  # JSON has one number type: a float field may hold a whole number
            out = {"type": "number"}
        return out
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        options = [_type_schema(a, defs) for a in args]
        if len(options) == 2 and {"type": "null"} in options:
            other = next(o for o in options if o != {"type": "null"})
            if set(other) == {"type"}:
                types_ = other["type"] if isinstance(other["type"], list) else [other["type"]]
                return {"type": types_ + ["null"]}
        return {"anyOf": options}
    if origin in (list, tuple):
        return {"type": "array", "items": _type_schema(args[0], defs) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], defs) if len(args) == 2 else {}}
    if is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = _dataclass_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON schema for the annotation {tp!r}")


# Figures that cannot be negative, by the unit their name ends in (time, energy, mass, water, money, device time,
# rates) or by what they count; a report read back with one below zero is refused (headroom, changes and
# differences are signed, and named otherwise).
_NON_NEGATIVE_SUFFIXES = ("_s", "_j", "_g", "_l", "_usd", "_hours", "_per_s")
_NON_NEGATIVE_NAMES = {"mfu", "hfu", "peak_bytes", "weights_bytes", "gradients_bytes", "optimizer_bytes",
                       "activations_bytes", "kv_cache_bytes", "device_bytes", "forward", "backward", "model", "total",
                       "hardware", "recompute", "attention", "tokens", "devices"}


# The workload's choices and counts, as Workload validates them: a report read back with mode "bogus" or batch -3
# is refused, not rendered as if it had been run.
_WORKLOAD_CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": MODES, "precision": tuple(PRECISIONS), "optimizer": OPTIMIZERS, "attention": ATTENTION,
    "recompute": RECOMPUTE, "offload": OFFLOAD, "grad_reduce": GRAD_REDUCE, "grad_reduce_dtype": GRAD_REDUCE_DTYPE,
    "mixed_weights": MIXED_WEIGHTS, "schedule": SCHEDULES, "cp_comm": CP_COMM, "tp_overlap": TP_OVERLAP, "quant": QUANT,
    "fusion": FUSION + (None,), "zero": (0, 1, 2, 3)}
_WORKLOAD_AT_LEAST_ONE = ("batch", "seq", "gen_tokens", "micro_batch", "grad_accum", "shard_group", "etp", "dp", "tp",
                          "pp", "ep", "cp", "vp", "lora_rank")


def _workload_values(props: dict[str, Any]) -> None:
    for name, choices in _WORKLOAD_CHOICES.items():
        props[name] = {**props[name], "enum": list(choices)}
    for name in _WORKLOAD_AT_LEAST_ONE:
        props[name]["minimum"] = 1


def _non_negative(name: str) -> bool:
    return name in _NON_NEGATIVE_NAMES or name.endswith(_NON_NEGATIVE_SUFFIXES)


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(sections_module))
    keep_none = getattr(cls, "KEEP_NONE", False) if issubclass(cls, Section) else True
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in fields(cls):
        hint = hints[f.name]
        optional = type(None) in typing.get_args(hint)
        props[f.name] = _type_schema(hint, defs)
        kinds = props[f.name].get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if _non_negative(f.name) and ("number" in kinds or "integer" in kinds):
            props[f.name]["minimum"] = 0
        if keep_none or not optional:  # only a None value of an optional field is left out
            required.append(f.name)
    if cls.__name__ == "WorkloadSection":
        _workload_values(props)
    out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    out["additionalProperties"] = bool(getattr(cls, "OPEN", False))
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        out["description"] = " ".join(cls.__doc__.split())
    return out


def build_schema() -> dict[str, Any]:
    """The whole report schema: envelope, provenance, assumptions, and one entry per section name."""
    defs: dict[str, Any] = {}
    section_props: dict[str, Any] = {}
    for name, classes in SECTIONS.items():
        options = [_type_schema(cls, defs) for cls in classes]
        section_props[name] = options[0] if len(options) == 1 else {"anyOf": options}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mlfootprint.dev/schema/report-1.json",
        "title": SCHEMA,
        "description": "A report of mlfootprint: what one verb computed, each figure with its provenance. "
                       "Keys carry their unit as a suffix (_bytes, _s, _j, _g, _l, _usd, _per_s); "
                       "a section a verb did not compute is absent, never zero.",
        "type": "object",
        "properties": {
            "schema": {"const": SCHEMA},
            "tool": {"type": "string", "pattern": "^mlfootprint "},
            "verb": {"enum": list(REPORT_VERBS)},
            **section_props,
            "conventions": {"type": "object", "additionalProperties": {"type": "string"}},
            "provenance": {"type": "object", "additionalProperties": {"enum": list(PROVENANCE_KINDS)}},
            "assumptions": {"type": "array", "items": {"type": "string"}},
            "key_assumptions": {"type": "array", "items": {"type": "string"},
                                "description": "the few assumptions that moved the numbers most (on the card)"},
        },
        "required": ["schema", "tool", "verb", "provenance", "assumptions"],
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }


def schema_path() -> Path:
    return package_data_dir("report") / SCHEMA_FILE


def shipped_schema() -> dict[str, Any]:
    """The schema file in the package (the one users and tools read)."""
    return json.loads(schema_path().read_text(encoding="utf-8"))


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover - the refresh command in the module docstring
    sys.stdout.write(render_schema())
