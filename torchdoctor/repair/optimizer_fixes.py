"""Interventions on the optimizers, for one re-run: the learning rate, weight decay and the
parameters they hold set as the optimizer is built (a wrapped `Optimizer.__init__`), clipping,
`zero_grad` and skipping in the global step hooks. Registered before torchdoctor's probes, so the
probes see the run as the fix leaves it."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from .. import patching
from .model_fixes import root_calls


def after_init(change: Callable[[torch.optim.Optimizer], None]) -> contextlib.AbstractContextManager[None]:
    """`change(optimizer)` right after every optimizer's `__init__`, before a scheduler built on it
    reads its param groups."""
    return patching.after_init(torch.optim.Optimizer, change)


@contextlib.contextmanager
def step_hook(register: Callable[[Callable[..., None]], Any], hook: Callable[..., None]) -> Iterator[None]:
    """`hook` as a global optimizer step pre- or post-hook (`register`) for the run."""
    handle = register(hook)
    try:
        yield
    finally:
        handle.remove()


def set_learning_rate(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Every optimizer's learning rates scaled by lr / current_lr (the rule's new value over the one
    it saw): the counted optimizer ends at `lr`, others (a GAN's second) keep their ratio to it, and
    a scheduler built afterwards reads the new value. Without `current_lr`, the first optimizer's
    first group stands for it. Param groups added later use the scaled `defaults`. Serves both
    lower_learning_rate and raise_learning_rate."""
    new = float(params["lr"])
    current = params.get("current_lr")
    scale: list[float] = [new / float(current)] if current else []

    def change(optimizer: torch.optim.Optimizer) -> None:
        if not scale:
            first = _as_float(optimizer.param_groups[0].get("lr")) if optimizer.param_groups else None
            if not first:
                return
            scale.append(new / first)
        _scale_lr(optimizer, scale[0])

    return after_init(change)


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


def add_weight_decay(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """`weight_decay` in every param group that had none; decoupled (AdamW's) on an Adam when the
    rule asked for AdamW."""
    value = float(params["weight_decay"])
    decoupled = params.get("optimizer") == "AdamW"

    def change(optimizer: torch.optim.Optimizer) -> None:
        for group in [*optimizer.param_groups, optimizer.defaults]:
            if not group.get("weight_decay"):
                group["weight_decay"] = value
                if decoupled and "decoupled_weight_decay" in group:
                    group["decoupled_weight_decay"] = True

    return after_init(change)


def clip_gradients(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Clip the gradient norm of each optimizer's parameters at `max_norm` just before its step.
    Under GradScaler the gradients are already unscaled when the pre-hook runs."""
    max_norm = float(params["max_norm"])

    def pre(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            torch.nn.utils.clip_grad_norm_(grads, max_norm)

    return step_hook(register_optimizer_step_pre_hook, pre)


def call_zero_grad(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """`optimizer.zero_grad()` right after every step: the next backward starts from no gradient."""
    return step_hook(register_optimizer_step_post_hook, lambda optimizer, args, kwargs: optimizer.zero_grad())


def skip_nonfinite_steps(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """A step whose gradients hold a NaN or Inf applies nothing: its gradients are set to None, so
    the optimizer passes over every parameter (one host read per step, in the re-run only)."""

    def pre(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            for g in optimizer.param_groups:
                for p in g["params"]:
                    p.grad = None

    return step_hook(register_optimizer_step_pre_hook, pre)


@contextlib.contextmanager
def optimize_all_parameters(params: dict[str, Any]) -> Iterator[None]:
    """Before an optimizer's first step, the parameters of the script's models that no optimizer
    holds join it (as one more param group with its defaults), trainable: the optimizer line the
    fix writes, `Adam(model.parameters(), ...)`."""
    models: weakref.WeakSet[nn.Module] = weakref.WeakSet()
    done: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
    optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()

    def on_model(model: nn.Module) -> list[Any]:
        models.add(model)
        return []

    def pre(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        optimizers.add(optimizer)
        if optimizer in done:
            return
        done.add(optimizer)
        held = {id(p) for o in optimizers for g in o.param_groups for p in g["params"]}
        mine = {id(p) for g in optimizer.param_groups for p in g["params"]}
        for model in list(models):
            own = list(model.parameters())
            if not any(id(p) in mine for p in own):
                continue  # another model's optimizer (a GAN's other half)
            missing = [p for p in own if id(p) not in held]
            for p in missing:
                p.requires_grad_(True)
            if missing:
                optimizer.add_param_group({"params": missing})
                held |= {id(p) for p in missing}

    with root_calls(on_model=on_model), step_hook(register_optimizer_step_pre_hook, pre):
        yield
