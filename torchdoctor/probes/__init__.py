"""Probes: what observes the run through PyTorch's own hook points."""

from __future__ import annotations

import torch

# Looked up once: the module hooks ask on every module call.
_IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None)


def tracing() -> bool:
    """True while torch.compile traces the code (with fake tensors): nothing seen then is real,
    so probes record nothing; the compiled code then runs without calling them."""
    if _IS_COMPILING is None:
        return False
    try:
        return bool(_IS_COMPILING())
    except Exception:
        return False
