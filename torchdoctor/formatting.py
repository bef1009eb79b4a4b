"""Numbers, sizes and messages as a person reads them: one spelling for the rules, the terminal and the HTML."""

from __future__ import annotations

import math
import re


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
