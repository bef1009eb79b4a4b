"""Probes: what observes the run through PyTorch's own hook points."""

from __future__ import annotations

import torch


def tracing() -> bool:
    """True while torch.compile traces the code (with fake tensors): nothing seen then is real,
    so probes record nothing; the compiled code then runs without calling them."""
    compiler = getattr(torch, "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    try:
        return bool(is_compiling()) if is_compiling is not None else False
    except Exception:
        return False
