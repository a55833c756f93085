"""Statistics of repeated timings: percentiles, the median and how sure we are of it.

Percentiles use linear interpolation between order statistics (the default of
NumPy and of Python's ``statistics.quantiles(method="inclusive")``): with the
sorted sample ``x[0..n-1]``, the q-th quantile sits at position ``(n-1)·q``.

The confidence interval of the median is distribution-free (it assumes nothing
about the shape of the timing distribution, which is usually skewed): the
order statistics of ranks ``j = floor((n - z·sqrt(n)) / 2)`` and
``k = ceil(1 + (n + z·sqrt(n)) / 2)`` (1-based, clamped to ``1..n``) bracket
the median with about 95% confidence for z = 1.96 (the normal approximation of
the binomial; e.g. n = 100 gives the 40th and 61st values). Its relative
half-width ``(x_k - x_j) / (2·median)`` is what `bench` drives below a
threshold before it stops repeating.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

Z_95 = 1.959963984540054


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 ≤ q ≤ 1) by linear interpolation; ``values`` need not be sorted."""
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median_ci(values: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (≈95% for the default z)."""
    if not values:
        raise ValueError("median CI of an empty sample")
    xs = sorted(values)
    n = len(xs)
    half = z * math.sqrt(n)
    j = max(1, math.floor((n - half) / 2))
    k = min(n, math.ceil(1 + (n + half) / 2))
    return xs[j - 1], xs[k - 1]


def median_ci_level(n: int, z: float = Z_95) -> float:
    """The exact coverage of :func:`median_ci`'s order statistics for ``n`` samples: the chance that the median lies
    between the j-th and the k-th, sum of C(n, i)/2^n over j ≤ i < k (about 0.95 from a dozen samples on, 0.75 at 3)."""
    if n < 1:
        raise ValueError("median CI level of an empty sample")
    half = z * math.sqrt(n)
    j = max(1, math.floor((n - half) / 2))
    k = min(n, math.ceil(1 + (n + half) / 2))
    return sum(math.comb(n, i) for i in range(j, k)) / 2 ** n


def median_ci_fraction(values: Sequence[float], z: float = Z_95) -> float:
    """Relative half-width of the median's confidence interval: (hi - lo) / (2·median)."""
    lo, hi = median_ci(values, z)
    med = statistics.median(values)
    if med <= 0:
        return math.inf
    return (hi - lo) / (2 * med)


def summarize(values: Sequence[float], prefix: str = "latency") -> dict[str, Any]:
    """Median, p90, p99, mean, min, max, standard deviation and the median's CI, keyed ``<prefix>_<stat>_s``."""
    if not values:
        return {}
    lo, hi = median_ci(values)
    out = {
        f"{prefix}_median_s": statistics.median(values),
        f"{prefix}_p90_s": percentile(values, 0.90),
        f"{prefix}_p99_s": percentile(values, 0.99),
        f"{prefix}_mean_s": statistics.fmean(values),
        f"{prefix}_min_s": min(values),
        f"{prefix}_max_s": max(values),
        f"{prefix}_stdev_s": statistics.stdev(values) if len(values) > 1 else 0.0,
        f"{prefix}_median_ci_low_s": lo,
        f"{prefix}_median_ci_high_s": hi,
        f"{prefix}_median_ci_fraction": median_ci_fraction(values),
        f"{prefix}_median_ci_level": median_ci_level(len(values)),
        f"{prefix}_samples": len(values),
    }
    return out
