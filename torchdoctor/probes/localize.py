"""Find where a non-finite loss came from by replaying the model's forward on the same batch.

The replay runs once, on the failure path only, under `no_grad`, with the RNG
state and every buffer (BatchNorm running statistics) restored afterwards, so
the user's training goes on exactly as it would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook


def tensors_in(obj: Any, depth: int = 0) -> Iterable[torch.Tensor]:
    """Tensors inside nested tuples/lists/dicts (a batch, a module's inputs or outputs)."""
    if depth > 4:
        return
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from tensors_in(item, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from tensors_in(item, depth + 1)


def nonfinite_kind(obj: Any) -> str | None:
    """"nan" or "inf" for NaN/+Inf (always a fault), "-inf" for -Inf only (may be a mask), else None."""
    neg = False
    for t in tensors_in(obj):
        if not t.is_floating_point() and not t.is_complex():
            continue
        if t.numel() == 0:
            continue
        t = t.detach()
        if bool(torch.isnan(t).any()):
            return "nan"
        if bool(torch.isposinf(t).any()):
            return "inf"
        if bool(torch.isneginf(t).any()):
            neg = True
    return "-inf" if neg else None


def describe_tensor(t: torch.Tensor) -> dict[str, Any]:
    t = t.detach()
    finite = t[torch.isfinite(t)] if t.is_floating_point() else t
    info: dict[str, Any] = {
        "shape": list(t.shape),
        "dtype": str(t.dtype).replace("torch.", ""),
        "nan_count": int(torch.isnan(t).sum()) if t.is_floating_point() else 0,
        "inf_count": int(torch.isinf(t).sum()) if t.is_floating_point() else 0,
    }
    if finite.numel():
        f = finite.float()
        info.update(min=float(f.min()), max=float(f.max()), mean=float(f.mean()))
    return info


def find_bad_input(named_tensors: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """The first batch tensor holding NaN/Inf. -Inf alone is allowed in tensors other than
    the first, where additive attention masks live."""
    for k, (label, obj) in enumerate(named_tensors):
        for t in tensors_in(obj):
            if not t.is_floating_point():
                continue
            kind = nonfinite_kind(t)
            if kind in ("nan", "inf") or (kind == "-inf" and k == 0):
                return {"tensor": label, **describe_tensor(t)}
    return None


@contextmanager
def preserved_state(root: torch.nn.Module):
    """Leave RNG streams and buffers (BatchNorm statistics, counters) as they were.

    BatchNorm layers in training mode are told not to track statistics for the replay: their
    output is the same (training mode normalises with the batch's own statistics) and their
    running buffers are never written. Writing them, even to restore them, would bump their
    version counters and break the user's pending backward, which saved them.
    """
    paused = [m for m in root.modules() if m.training and getattr(m, "track_running_stats", False)]
    saved = [(b, b.detach().clone()) for b in root.buffers()]
    devices = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = list(range(torch.cuda.device_count()))
    for m in paused:
        m.track_running_stats = False
    try:
        with torch.random.fork_rng(devices=devices, enabled=True):
            yield
    finally:
        for m in paused:
            m.track_running_stats = True
        with torch.no_grad():
            for buf, copy in saved:
                if not torch.equal(buf, copy):  # a custom module wrote a buffer: put it back
                    buf.data.copy_(copy)  # .data: no version bump for the user's saved tensors


def replay_forward(
    root: torch.nn.Module,
    args: tuple,
    kwargs: dict,
    name_of: Callable[[torch.nn.Module], str],
) -> dict[str, Any]:
    """Re-run `root(*args, **kwargs)` checking every module's inputs and outputs.

    The origin is the first module whose output holds NaN/+Inf while its inputs
    did not; when a module's *input* is already bad, the code between modules in
    the enclosing module's `forward` made it, so that module is the origin. -Inf
    alone (masked attention scores) is noted but only blamed when nothing else is.
    """
    stack: list[str] = [name_of(root)]
    found: dict[str, Any] = {}
    first_neg_inf: list[str] = []

    def pre(module: torch.nn.Module, inputs: Any) -> None:
        name = name_of(module)
        if not found and module is not root:
            kind = nonfinite_kind(inputs)
            if kind in ("nan", "inf"):
                found.update(origin=stack[-1], kind=kind, detail=f"non-finite values entered {name} "
                             f"from code in the forward of {stack[-1]}")
        stack.append(name)

    def post(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        name = stack.pop() if len(stack) > 1 else name_of(module)
        if found:
            return
        kind = nonfinite_kind(output)
        if kind in ("nan", "inf"):
            found.update(origin=name, kind=kind, detail=f"output of {name} went {kind}")
            bad = [f"{name}.{n}" for n, p in module.named_parameters(recurse=False)
                   if not bool(torch.isfinite(p).all())]
            if bad:  # the module is fine; an earlier update wrote NaN/Inf into its weights
                found.update(weights_nonfinite=bad, detail=f"the weights of {name} are already non-finite")
        elif kind == "-inf" and not first_neg_inf:
            first_neg_inf.append(name)

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    try:
        with preserved_state(root), torch.no_grad():
            output = root(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    out_kind = nonfinite_kind(output)
    if not found and out_kind in ("nan", "inf"):
        found.update(origin=name_of(root), kind=out_kind, detail="model output went non-finite")
    if not found and out_kind == "-inf" and first_neg_inf:
        found.update(origin=first_neg_inf[0], kind="-inf", detail=f"output of {first_neg_inf[0]} went -inf")
    if first_neg_inf and found.get("origin") != first_neg_inf[0]:
        found["masked_neg_inf"] = first_neg_inf[0]
    found["model_output_finite"] = out_kind is None or (out_kind == "-inf" and "origin" not in found)
    return found
