"""The interventions `torchdoctor fix` installs for a re-run, one per fix action.

Each is a context manager: entering installs the change to PyTorch (a wrapped
`Optimizer.__init__`, a global optimizer step pre-hook), leaving removes it, whatever the run did.
Nothing touches the user's file; the change lives for one run of the script in this process.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook


@contextlib.contextmanager
def lower_learning_rate(params: dict[str, Any]) -> Iterator[None]:
    """Every optimizer the script builds gets its learning rates scaled by lr / current_lr (the
    rule's new value over the one it saw), right after `Optimizer.__init__`: the counted optimizer
    ends at `lr`, other optimizers (a GAN's second) keep their ratio to it, and a scheduler built
    afterwards reads the lowered value. Without `current_lr`, the first optimizer's first group's
    rate stands for it. Param groups added later use the scaled `defaults`."""
    new = float(params["lr"])
    current = params.get("current_lr")
    scale: list[float] = [new / float(current)] if current else []
    original = torch.optim.Optimizer.__dict__["__init__"]

    @functools.wraps(original)
    def init(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not scale:
            first = _as_float(self.param_groups[0].get("lr")) if self.param_groups else None
            if not first:
                return
            scale.append(new / first)
        _scale_lr(self, scale[0])

    torch.optim.Optimizer.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.optim.Optimizer.__init__ = original  # type: ignore[method-assign]


def _scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for holder in [*optimizer.param_groups, optimizer.defaults]:
        for key in ("lr", "initial_lr"):
            value = holder.get(key)
            if isinstance(value, torch.Tensor):
                value.mul_(factor)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                holder[key] = value * factor


def _as_float(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value) if isinstance(value, (int, float)) else None


@contextlib.contextmanager
def clip_gradients(params: dict[str, Any]) -> Iterator[None]:
    """Clip the gradient norm of each optimizer's parameters at `max_norm` just before its step (a
    global step pre-hook: registered before torchdoctor's probes, so they see the clipped norms).
    Under GradScaler the gradients are already unscaled when the pre-hook runs."""
    max_norm = float(params["max_norm"])

    def pre(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            torch.nn.utils.clip_grad_norm_(grads, max_norm)

    handle = register_optimizer_step_pre_hook(pre)
    try:
        yield
    finally:
        handle.remove()


# action -> the intervention that applies it from outside the script, and the params it needs.
SUPPORTED: dict[str, tuple[Callable[[dict[str, Any]], contextlib.AbstractContextManager[None]], tuple[str, ...]]] = {
    "lower_learning_rate": (lower_learning_rate, ("lr",)),
    "clip_gradients": (clip_gradients, ("max_norm",)),
}


def supported(action: str, params: dict[str, Any]) -> bool:
    """Whether `torchdoctor fix` can apply this fix from outside: a known action, its numbers there."""
    entry = SUPPORTED.get(action)
    return entry is not None and all(params.get(name) is not None for name in entry[1])


def intervention(action: str, params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """The context manager applying `action` with `params` for one run; KeyError when unsupported."""
    return SUPPORTED[action][0](params)
