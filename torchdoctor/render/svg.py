"""The gradient table's inline SVG sparklines: drawn as text, so the table needs no image."""

from __future__ import annotations

import math
from typing import Any

from .plots import number


def sparkline(trend: Any, width: int = 90, height: int = 18) -> str:
    """log10 of the norm trend as an inline SVG; non-finite points as red dots along the top."""
    values = [number(v) for v in trend or []]
    if len(values) < 2:
        return ""
    logs = [math.log10(v) if math.isfinite(v) and v > 0 else None for v in values]
    known = [v for v in logs if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    span = (high - low) or 1.0
    step = (width - 4) / (len(values) - 1)
    points, dots = [], []
    for i, (raw, v) in enumerate(zip(values, logs, strict=True)):
        x = 2 + i * step
        if v is not None:
            points.append(f"{x:.1f},{2 + (height - 4) * (1 - (v - low) / span):.1f}")
        elif not math.isfinite(raw):
            dots.append(f"<circle cx=\"{x:.1f}\" cy=\"3\" r=\"1.8\" fill=\"#c0392b\"/>")
    line = (f"<polyline points=\"{' '.join(points)}\" fill=\"none\" stroke=\"#2c6fbb\" stroke-width=\"1.2\"/>"
            if len(points) > 1 else "")
    return (f"<svg class=\"spark\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" "
            f"role=\"img\" aria-label=\"gradient norm trend\">{line}{''.join(dots)}</svg>")
