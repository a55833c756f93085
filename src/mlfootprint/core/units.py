"""Units: parsing the sizes and durations users type, and the conversions the footprint chain uses."""
from __future__ import annotations

import math
import re

from .errors import UserError

J_PER_KWH = 3.6e6

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
                   "day": 86400.0, "days": 86400.0, "w": 604800.0, "week": 604800.0, "weeks": 604800.0}


def parse_size(text: str | int, option: str = "size") -> int:
    """'80GB' (1e9), '80GiB' (2^30), '8e10', '1024' (bytes) → bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise UserError(f"malformed {option} {text!r}: write a size such as 80GB (10^9 bytes), 80GiB (2^30 bytes) or 8e10")
    value = float(m.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(value):
        raise UserError(f"{option} {text!r} is not a finite size")
    return int(round(value))


def parse_duration(text: str | float, option: str = "--deadline") -> float:
    """'90d' → 7776000.0 seconds; units s, m (minutes), h, d, w; a bare number is seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = _DURATION.match(str(text))
        if not m or m.group(2).lower() not in _DURATION_UNITS:
            raise UserError(f"{option} expects a duration like 90d, 36h, 2w or 3600s, got '{text}'")
        value, unit = float(m.group(1)), m.group(2).lower()
    seconds = value * _DURATION_UNITS[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{option} must be a positive duration, got '{text}'")
    return seconds


# -- human formatting of figures (report/units.py builds on these; lower layers word their notes with them)

_SI = ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """1.234e12, 'FLOP' → '1.23 TFLOP'."""
    if value is None:
        return "n/a"
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return str(value)
    mag = abs(value)
    for scale, prefix in _SI:
        if mag >= scale:
            return f"{_sig(value / scale, digits)} {prefix}{unit}".rstrip()
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)} {unit}".rstrip()
    return f"{_sig(value, digits)} {unit}".rstrip()


def _sig(value: float, digits: int) -> str:
    """``digits`` significant digits, never in exponent notation (1230 → '1230', 0.000123 → '0.000123')."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 2 * 3600:
        return f"{s / 60:.3g} min"
    if s < 3 * 86400:
        return f"{s / 3600:.3g} h"
    if s < 2 * 365.25 * 86400:
        return f"{_sig(s / 86400, 3)} days"
    return f"{_sig(s / (365.25 * 86400), 3)} years"


def plain_number(value: float, digits: int = 4) -> str:
    """``digits`` significant digits without exponent notation: 31,220 / 12.35 / 0.0123 / 0.000005 (whole
    numbers from 10,000 on, with thousands separators)."""
    if value and abs(value) >= 1e4:
        return f"{value:,.0f}"
    return _sig(value, digits)
