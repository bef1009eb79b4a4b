"""Small numeric helpers shared by rules: robust statistics and numbers a person can type."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def nice(value: float, digits: int = 2) -> float:
    """Round to `digits` significant figures, e.g. 0.012345 -> 0.012."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, -int(math.floor(math.log10(abs(value)))) + digits - 1)


def fmt(value: float | None) -> str:
    """Compact human formatting: 1.2e-05, 0.034, 12.5, 3.4e+06."""
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return str(value)
    a = abs(value)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{value:.2g}" if a < 1e-3 else f"{value:.2e}"
    return f"{value:.4g}"


def thin(points: Sequence[tuple[int, float]], limit: int = 60) -> list[list[float]]:
    """At most `limit` evenly spaced [step, value] pairs, the last one always kept."""
    pts = list(points)
    if len(pts) > limit:
        stride = math.ceil(len(pts) / limit)
        kept = pts[::stride]
        if kept[-1] != pts[-1]:
            kept.append(pts[-1])
        pts = kept
    return [[s, v] for s, v in pts]
