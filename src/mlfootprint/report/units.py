"""Human formatting of base-unit figures: engineering prefixes, no exponent notation.

Memory is shown in GiB (2**30 bytes), as devices are sold ("80 GB" cards hold 80 GiB) and as ``hardware list``
shows it; GB (1e9) is written out where both are given. Durations go up to years, tiny amounts down to
µ-prefixes and exact decimals.
"""
from __future__ import annotations

import math
from typing import Any

from ..core.units import _sig, plain_number, seconds, si  # noqa: F401  (si, seconds: this module's interface)

_SMALL = ((1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))


def small(value: float, unit: str, digits: int = 3) -> str:
    """A quantity that may be tiny, with a sub-unit prefix: 2.2e-7 L → '0.224 µL'."""
    mag = abs(value)
    if mag == 0 or mag >= 1:
        return f"{_sig(value, digits)} {unit}"
    for scale, prefix in _SMALL:
        if mag >= scale:
            return f"{_sig(value / scale, digits)} {prefix}{unit}"
    return f"{_sig(value / 1e-12, digits)} p{unit}"


def usd(value: float) -> str:
    """Dollars: cents for everyday amounts, two significant digits below a cent ('$0.000018')."""
    if value and abs(value) < 0.01:
        return f"${_sig(value, 2)}"
    if abs(value) >= 1e6:
        return f"${si(value, digits=3)}"
    return f"${value:,.2f}"


def params(value: float) -> str:
    """Parameter counts as the field writes them: '124.4 M', '6.738 B' (billions, not 'G'), '1.2 T'."""
    mag = abs(value)
    for scale, prefix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if mag >= scale:
            return f"{_sig(value / scale, 4)} {prefix}"
    return f"{int(value):,}"


def count(value: int | float | None) -> str:
    """Parameter counts: '124.4 M (124,439,808)'."""
    if value is None:
        return "n/a"
    v = int(value)
    if abs(v) < 1000:
        return f"{v:,}"
    return f"{params(v)} ({v:,})"


def gb(nbytes: float | None, binary: bool = True) -> str:
    if nbytes is None:
        return "n/a"
    if binary:
        if abs(nbytes) < 2**30 * 0.01 and nbytes:
            return f"{plain_number(nbytes / 2**20, 3)} MiB" if abs(nbytes) >= 2**20 * 0.01 else f"{plain_number(nbytes / 2**10, 3)} KiB"
        if abs(nbytes) >= 2**40 * 10:
            return f"{nbytes / 2**40:,.1f} TiB"
        return f"{nbytes / 2**30:,.2f} GiB"
    if abs(nbytes) < 1e9 * 0.01 and nbytes:  # below 10 MB, 0.00 GB says nothing: MB / kB (1e6 / 1e3)
        return f"{plain_number(nbytes / 1e6, 3)} MB" if abs(nbytes) >= 1e4 else f"{plain_number(nbytes / 1e3, 3)} kB"
    return f"{nbytes / 1e9:,.2f} GB"


_plain = plain = plain_number  # for the renderers outside this module


def energy(joules: float) -> str:
    """Joules as watt-hours with a prefix: '1.2 MWh', '0.592 mWh'."""
    wh = joules / 3600
    return si(wh, "Wh", digits=3) if abs(wh) >= 1 else small(wh, "Wh")


def mass_g(grams: float) -> str:
    """CO2e mass: t, kg, g, mg."""
    if abs(grams) >= 1e6:
        return f"{_plain(grams / 1e6)} t"
    if abs(grams) >= 1e3:
        return f"{_plain(grams / 1e3)} kg"
    return f"{_plain(grams)} g" if abs(grams) >= 1 else small(grams, "g")


def by_key(key: str, value: Any, section: str = "") -> str:
    """Format one figure by its key's unit suffix (the JSON convention)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "—"
    if not isinstance(value, (int, float)):
        return str(value)
    if key.endswith("_per_s"):  # a rate, not a duration: tokens_per_s, memory_bandwidth_bytes_per_s
        unit = rate_unit(key)
        return si(value, unit, digits=4) if unit in ("FLOP/s", "B/s") else f"{si(value, digits=4)} {unit}"
    if key.endswith("_bytes"):
        return gb(value)
    if key.endswith("_s"):
        return seconds(value)
    if key.endswith("_j"):
        return f"{si(value, 'J')} ({energy(value)})"
    if key.endswith("_g"):
        return mass_g(value)
    if key.endswith("_l"):
        return small(value, "L") if abs(value) < 1 else f"{_plain(value)} L"
    if key.endswith("_usd"):
        return usd(value)
    if key.endswith("_hours"):
        return f"{_plain(value)} device-h" if "device" in key else f"{_plain(value)} h"
    if key.endswith("_w"):
        return f"{_plain(value)} W"
    if key in ("mfu", "hfu") or key.endswith("_fraction") or key.endswith("_ratio"):
        return f"{100 * value:.1f}%" if key in ("mfu", "hfu") or key.endswith("_fraction") else f"{value:.3g}"
    if key == "params" and isinstance(value, int):  # a module's parameters in the flops tree: a count, not FLOPs
        return count(value)
    if "flop" in key or (section == "flops" and not key.endswith("_count") and key not in ("calls", "tokens")):
        return si(value, "FLOP")
    if isinstance(value, int) and section == "params":
        return count(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _plain(value) if math.isfinite(value) else str(value)  # no 1.843e+05, no 4.441e-05
    return str(value)


def rate_unit(key: str) -> str:
    """'tokens_per_s' → 'tokens/s', 'memory_bandwidth_bytes_per_s' → 'B/s', 'peak_flops_per_s' → 'FLOP/s'."""
    stem = key[: -len("_per_s")] if key.endswith("_per_s") else key
    last = stem.rsplit("_", 1)[-1] if stem else ""
    return {"flops": "FLOP", "flop": "FLOP", "bytes": "B", "": ""}.get(last, last) + "/s"


def unit_of(key: str, section: str = "") -> str:
    """The base unit of a figure, from its key's suffix (the JSON convention); '' when it has none.

    Used where a number is written raw with its unit beside it (CSV, comparison tables):
    'peak_bytes' → 'B', 'step_s' → 's', 'co2e_g' → 'gCO2e', 'mfu' → 'fraction', flops.* → 'FLOP'.
    """
    if key.endswith("_per_s"):
        return rate_unit(key)
    for suffix, unit in (("_bytes", "B"), ("_s", "s"), ("_j", "J"), ("_l", "L"), ("_usd", "USD"), ("_w", "W"),
                         ("_kwh", "kWh"), ("_hours", "h")):
        if key.endswith(suffix):
            return unit
    if key.endswith("_g"):
        return "gCO2e" if "co2" in key else "g"
    if key in ("mfu", "hfu") or key.endswith("_fraction"):
        return "fraction"
    if section == "flops":
        if key == "tokens":
            return "tokens"
        if key == "per_token":
            return "FLOP/token"
        if key.endswith("_count") or key == "calls":
            return ""
        return "FLOP"
    if "flop" in key:
        return "FLOP"
    if section == "params":
        return "parameters"
    return ""
