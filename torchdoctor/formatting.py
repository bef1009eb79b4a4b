"""Numbers, sizes and messages as a person reads them: one spelling for the rules, the terminal and the HTML."""

from __future__ import annotations

import math
import re
from typing import Any


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


def format_bytes(size: float | None) -> str:
    """Binary units with three significant figures: 512 B, 1.5 KiB, 23.4 GiB."""
    if size is None:
        return "n/a"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.0f} TiB"


def short_message(text: str, limit: int = 80) -> str:
    """An exception's first line, without the C++ source location gloo and NCCL put first, cut to `limit`."""
    line = text.strip().splitlines()[0] if text.strip() else text
    line = re.sub(r"\[[^\]\s]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


BARS = "▁▂▃▄▅▆▇█"


def log_bounds(values: list[Any]) -> tuple[float, float] | None:
    """The log10 range of the finite positive values (None when there is none): the scale of a
    sparkline, or of several drawn to compare."""
    logs = [math.log10(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return (min(logs), max(logs)) if logs else None


def sparkline(values: list[Any], bounds: tuple[float, float] | None = None, zero: str = " ") -> str:
    """Log-scaled bars, since norms and losses move by orders of magnitude; ✗ where a value was not
    finite, `zero` where it was 0 or below. `bounds`: a log10 range shared with other lines (else
    this line's own); "" when there is nothing to draw."""
    bounds = bounds or log_bounds(values)
    if bounds is None:
        return ""
    low, span = bounds[0], (bounds[1] - bounds[0]) or 1.0
    out = []
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            out.append("✗")
        elif v <= 0:
            out.append(zero)
        else:
            out.append(BARS[min(len(BARS) - 1, max(0, int((math.log10(v) - low) / span * (len(BARS) - 1) + 0.5)))])
    return "".join(out)
