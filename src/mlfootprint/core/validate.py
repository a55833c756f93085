"""Checks at the boundary, shared by every verb and API function: numbers, text files, JSON, typed fields.

Whatever a user types or points at is checked here once, with a one-line :class:`UserError` that names the
option, file or field and says what to do; past the boundary the code may trust its inputs.

* numbers: finite, inside a range, whole where they count something (:func:`number`, :func:`whole`);
* text files: UTF-8, with or without a byte-order mark; UTF-16/32, Latin-1 or binary data is refused with the
  file and the problem named (:func:`read_text`);
* JSON: standard JSON only (no NaN/Infinity), nested at most :data:`MAX_JSON_DEPTH` deep (:func:`parse_json`);
* typed fields: a value against a JSON Schema's ``type``/``properties``/``items``/``anyOf``/``enum``/``const``/``minimum``,
  the field named by its dotted path (:func:`check_types`), used for reports (the shipped report schema) and
  for the claims and hardware files (their field tables).
"""
from __future__ import annotations

import codecs
import json
import math
import stat
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UserError

# Deeper than any file mlfootprint reads or writes (a report's module tree is ~30 levels for the deepest catalog
# model), shallow enough that every recursive walk of the data stays far below Python's recursion limit.
MAX_JSON_DEPTH = 200

# The largest whole number a count option may hold (2^40, about 1.1e12): far above anything real, small enough that
# arithmetic on it stays exact and fast. Options with a tighter meaning pass their own bound.
MAX_COUNT = 1 << 40

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


# -- numbers ------------------------------------------------------------------------------------------------------

def number(option: str, value: Any, *, low: float | None = 0.0, high: float | None = None,
           low_inclusive: bool = False, high_inclusive: bool = True, optional: bool = True) -> float | None:
    """``value`` as a finite float in the range (``low``, ``high``] (bounds' inclusiveness as given), else a
    UserError naming ``option`` (e.g. ``"--pue"``). None passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{option} must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:  # an int beyond float range
        raise UserError(f"{option} {value!r} is beyond any real value") from None
    if not math.isfinite(x):
        raise UserError(f"{option} must be a finite number, got {value!r}")
    if low == 0 and not low_inclusive and x <= 0:
        raise UserError(f"{option} must be a positive number, got {_fmt(x)}")
    if low is not None and (x < low or (x == low and not low_inclusive)):
        raise UserError(f"{option} must be {'at least' if low_inclusive else 'greater than'} {_fmt(low)}, got {_fmt(x)}")
    if high is not None and (x > high or (x == high and not high_inclusive)):
        raise UserError(f"{option} must be {'at most' if high_inclusive else 'less than'} {_fmt(high)}, got {_fmt(x)}")
    return x


def whole(option: str, value: Any, *, low: int = 1, high: int = MAX_COUNT, optional: bool = True) -> int | None:
    """``value`` as a whole number in [``low``, ``high``], else a UserError naming ``option``."""
    if value is None and optional:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{option} must be a whole number, got {value!r}")
    if value < low:
        what = "a positive whole number" if low == 1 else f"a whole number >= {low}"
        raise UserError(f"{option} must be {what}, got {value}")
    if value > high:
        raise UserError(f"{option} {value:,} is beyond any real workload (at most {high:,})")
    return value


def _fmt(x: float) -> str:
    return f"{x:g}"


# -- text files ---------------------------------------------------------------------------------------------------

def decode_text(data: bytes, what: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped); anything else a UserError naming ``what`` and the problem."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise UserError(f"{what} is {name} text (it starts with a {name} byte-order mark); mlfootprint reads "
                            "UTF-8: save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise UserError(f"{what} is not a text file (it holds binary data: a NUL byte at offset {nul}); "
                        "give the UTF-8 text file instead")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        line = data.count(b"\n", 0, exc.start) + 1
        hint = " (Latin-1 or Windows-1252 text?)" if 0x80 <= byte <= 0xFF else ""
        raise UserError(f"{what} is not UTF-8 text: byte 0x{byte:02x} on line {line} (offset {exc.start}) is not "
                        f"valid UTF-8{hint}; save it as UTF-8") from None


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The text of a UTF-8 file (with or without a byte-order mark), or a one-line UserError that names the file
    (``what`` says what it should be: ``"report"``, ``"claims file"``) and the problem."""
    p = Path(path)
    shown = f"{what} {p}"
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            # a FIFO or a device would block the read, or never end: only regular files are read
            raise UserError(f"cannot read {shown}: it is not a regular file (a pipe or a device); give a file")
        data = p.read_bytes()
    except IsADirectoryError:
        raise UserError(f"cannot read {shown}: it is a folder; give a file") from None
    except OSError as exc:
        raise UserError(f"cannot read {shown}: {exc.strerror or exc}") from None
    return decode_text(data, shown)


# -- JSON ---------------------------------------------------------------------------------------------------------

class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(name)


def parse_json(text: str, what: str, *, max_depth: int = MAX_JSON_DEPTH, not_json: str = "is malformed JSON") -> Any:
    """Standard JSON (no NaN or Infinity) nested at most ``max_depth`` deep, else a UserError naming ``what``
    (``not_json`` says what a text that does not parse is)."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except _NotJson as exc:
        raise UserError(f"{what} holds {exc}, which is not a JSON number; write null or a finite number") from None
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be a mlfootprint file (more than {max_depth} levels)") from None
    except ValueError as exc:
        raise UserError(f"{what} {not_json} ({exc})") from None
    depth = json_depth(data, stop_at=max_depth + 1)
    if depth > max_depth:
        raise UserError(f"{what} is nested too deeply to be a mlfootprint file (more than {max_depth} levels)")
    return data


def json_depth(data: Any, stop_at: int | None = None) -> int:
    """How many containers deep ``data`` is (0 for a scalar), counted without recursion; stops at ``stop_at``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if stop_at is not None and deepest >= stop_at:
            return deepest
        stack.extend((c, depth + 1) for c in children)
    return deepest


# -- typed fields -------------------------------------------------------------------------------------------------

_JSON_TYPES = {"object": "a table", "array": "a list", "string": "text", "number": "a number",
               "integer": "a number", "boolean": "true or false", "null": "null"}


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, Mapping)
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name in ("number", "integer"):
        # JSON has one number type, and a figure counted as a whole number may be written as a float (a mean, a
        # hand-made report): the check is that it is a finite number, which is what every reader relies on.
        return is_figure(value)
    return True


def is_figure(value: Any) -> bool:
    """A number every reader can use: an int or float (not a bool), finite, and within a float's range (an int of
    10**400 makes ``float()`` and ``math.isfinite`` raise)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**1023
    return isinstance(value, float) and math.isfinite(value)


def type_problem(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str = "") -> str | None:
    """The first place where ``value`` has the wrong type for ``schema`` (``"params.total: expected a whole number,
    got 'x'"``), or None. Checks ``type``, ``properties`` (of the keys present), ``additionalProperties`` given
    as a schema, ``items``, ``anyOf``, ``enum``, ``const`` and ``$ref`` into ``root``'s ``$defs``; required keys
    and unknown keys are not checked (renderers skip what is absent and what they do not know)."""
    # Recursive, and safe: parse_json bounds the data's depth at MAX_JSON_DEPTH, and _problem stops there too.
    return _problem(value, schema, root, path, 0)


def _problem(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str, depth: int) -> str | None:
    if depth > MAX_JSON_DEPTH:
        return f"{path or 'the file'}: nested too deeply"
    schema = _resolve(schema, root)
    where = path or "the file"
    if "const" in schema and value != schema["const"]:
        return f"{where}: expected {schema['const']!r}, got {_short(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: expected one of {', '.join(map(str, schema['enum']))}, got {_short(value)}"
    if "anyOf" in schema:
        options = list(schema["anyOf"])
        if isinstance(value, Mapping) and value:
            # A table is checked against the options that declare most of its keys (unknown keys are not errors,
            # so an option that declares none of them would accept any value for all of them).
            overlap = [len(set(value) & set(_resolve(o, root).get("properties", {}))) for o in options]
            if max(overlap) > 0:
                options = [o for o, n in zip(options, overlap) if n == max(overlap)]
        problems = [_problem(value, option, root, path, depth + 1) for option in options]
        if all(problems):
            return min(problems, key=lambda p: (p.count("."), len(p)))  # type: ignore[arg-type]
        return None
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, t) for t in names):
            wanted = " or ".join(_JSON_TYPES.get(t, t) for t in names)
            return f"{where}: expected {wanted}, got {_short(value)}"
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        why = " (it cannot be negative)" if schema["minimum"] == 0 else ""
        return f"{where}: expected a number of at least {schema['minimum']:g}{why}, got {_short(value)}"
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                problem = _problem(item, sub, root, f"{path}.{key}" if path else str(key), depth + 1)
                if problem:
                    return problem
    elif isinstance(value, (list, tuple)) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problem = _problem(item, schema["items"], root, f"{path}[{i}]", depth + 1)
            if problem:
                return problem
    return None


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return root.get("$defs", {}).get(ref[len("#/$defs/"):], {})
    return schema


def check_types(value: Any, schema: Mapping[str, Any], what: str, *, root: Mapping[str, Any] | None = None,
                fix: str = "") -> None:
    """A UserError naming ``what`` and the field when ``value`` does not have the types ``schema`` gives."""
    problem = type_problem(value, schema, root if root is not None else schema)
    if problem:
        raise UserError(f"{what} has a field of the wrong type: {problem}{'; ' + fix if fix else ''}")


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
