"""Small numeric helpers shared by rules: robust statistics and numbers a person can type
(their display spelling, `fmt`, is in torchdoctor.formatting)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def nice(value: float, digits: int = 2) -> float:
    """Round to `digits` significant figures, e.g. 0.012345 -> 0.012."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, -int(math.floor(math.log10(abs(value)))) + digits - 1)


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
