"""Byte sizes as people write them (`16GiB`, `512MB`); formatting.format_bytes writes them back."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str | int | float) -> int:
    """`16GiB`, `16G` and `16gib` are 16 * 2**30; `512MB` is 512 * 10**6; a bare number is bytes.
    A bare `G` means GiB, as in `nvidia-smi` and most tools people size GPUs with."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit, binary = float(text), "", ""
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise ValueError(f"not a size: {text!r} (expected e.g. 16GiB, 512MB, 8G)")
        number, unit, binary, b = match.groups()
        value = float(number)
        unit = unit.lower()
        if unit and not binary and not b:
            binary = "i"  # 16G: binary, like nvidia-smi
    base = 1024 if binary else 1000
    size = int(value * base ** _POWER[unit])
    if size <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return size

