"""What the script was doing when it died, in numbers a fix can use.

The probes note where an exception left the run (the innermost module whose forward raised,
with its input and the layer's sizes; a loss with its output and target) and what was raised.
Naming the mistake is the rules' job (rules/_failures.py): here are only the facts.
"""

from __future__ import annotations

from typing import Any

import torch

from ..layers import EMBEDDING_TYPES

MAX_MESSAGE = 4000  # characters of the exception message kept
LAYER_SIZES = ("in_features", "out_features", "in_channels", "out_channels", "num_embeddings", "embedding_dim")


def tensor_facts(values: Any) -> list[dict[str, Any]]:
    """Shape, dtype and device of the tensors among `values` (no data is read). A list of tensors
    among them (a detector's images) is one entry: the first one's, with `count` and every dtype."""
    out = []
    for v in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(v, torch.Tensor):
            out.append(_tensor(v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(t, torch.Tensor) for t in v):
            dtypes = sorted({str(t.dtype).replace("torch.", "") for t in v})
            out.append({**_tensor(v[0]), "count": len(v), "dtypes": dtypes})
    return out


def _tensor(v: torch.Tensor) -> dict[str, Any]:
    return {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""), "device": str(v.device)}


def module_facts(module: torch.nn.Module, args: tuple) -> dict[str, Any]:
    facts: dict[str, Any] = {"module_type": type(module).__name__, "inputs": tensor_facts(args)}
    for name in LAYER_SIZES:
        value = getattr(module, name, None)
        if isinstance(value, int):
            facts[name] = value
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        facts["weight_dtype"] = str(weight.dtype).replace("torch.", "")
        facts["weight_device"] = str(weight.device)
    if type(module).__name__ in EMBEDDING_TYPES and args and isinstance(args[0], torch.Tensor):
        facts["index_range"] = _int_range(args[0])
    return facts


def raising_module(exc: BaseException | None, known: dict[int, str]) -> tuple[torch.nn.Module, tuple] | None:
    """The innermost of the `known` modules whose method is on the exception's traceback, with
    the positional arguments it was called with. Once discovery is over only the root modules
    are hooked; the traceback still names the layer that raised (a Linear's forward) and holds
    its input."""
    found = None
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and id(owner) in known:
            code = frame.f_code
            names = code.co_varnames[1:code.co_argcount]
            args = [frame.f_locals[n] for n in names if n in frame.f_locals]
            if code.co_flags & 0x04:  # *args
                extra = frame.f_locals.get(code.co_varnames[code.co_argcount + code.co_kwonlyargcount])
                if isinstance(extra, tuple):
                    args += list(extra)
            found = (owner, tuple(args))
        tb = tb.tb_next
    return found


def loss_facts(args: tuple) -> dict[str, Any]:
    facts: dict[str, Any] = {"inputs": tensor_facts(args[:2])}
    if len(args) >= 2 and isinstance(args[1], torch.Tensor) and not args[1].is_floating_point():
        facts["target_range"] = _int_range(args[1])
    return facts


def _int_range(t: torch.Tensor) -> list[int] | None:
    """Read on the failure path only; after a CUDA device-side assert nothing can be read."""
    try:
        if t.numel() == 0 or t.is_floating_point():
            return None
        return [int(t.min()), int(t.max())]
    except Exception:
        return None


def exception_facts(exc: BaseException) -> dict[str, Any]:
    """What was raised, as plain values: the type, every class it derives from (so a rule can
    tell `torch.cuda.OutOfMemoryError` from another RuntimeError without importing torch), and
    the message."""
    return {"exception": type(exc).__name__, "exception_types": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc)[:MAX_MESSAGE]}
