"""Which optimizers step, which one counts the steps, and the habits around them: were the
gradients reset since the last step, does every trainable parameter have an optimizer."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..probes.habits import GradCarry
from ..timeline import Event, Timeline
from .models import SETTLE_AFTER, Models

IMPLEMENTATION_OPTIONS = frozenset({"foreach", "fused", "differentiable", "capturable", "maximize"})


@dataclass
class OptimizerState:
    params: list[torch.nn.Parameter]
    layer_of: list[int]
    signature: tuple[int, ...]
    ref: Callable[[], Any] = lambda: None  # the optimizer, weakly: its id may be reused once it is gone
    steps: int = 0
    groups: tuple[tuple[int, int], ...] = ()  # (id, length) of each group's list: unchanged, same params


class Optimizers:
    def __init__(self, timeline: Timeline, models: Models,
                 explicit: list[torch.optim.Optimizer] | None = None) -> None:
        self.timeline = timeline
        self.models = models
        self.explicit = {id(o) for o in explicit} if explicit else None
        self.states: dict[int, OptimizerState] = {}
        self.last_state: OptimizerState | None = None  # the one state_for() returned last
        # The optimizer whose steps are counted. Weak, so that a script that builds a new optimizer
        # (a second fine-tuning phase) is not tied to the dead one.
        self.primary_ref: Callable[[], Any] | None = None
        self.grad_carry = GradCarry()
        self.unoptimized_checked = False
        self.replaced = False  # the last is_primary() put a new optimizer in an earlier one's place

    def watched(self, optimizer: torch.optim.Optimizer) -> bool:
        return self.explicit is None or id(optimizer) in self.explicit

    def is_counted(self, optimizer: torch.optim.Optimizer) -> bool:
        return self.primary_ref is not None and self.primary_ref() is optimizer

    def alive(self) -> Iterator[torch.optim.Optimizer]:
        for state in list(self.states.values()):
            optimizer = state.ref()
            if optimizer is not None:
                yield optimizer

    def params_of(self, optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
        """Its parameters; those state_for() has just looked at when it is the same optimizer."""
        last = self.last_state
        if last is not None and last.ref() is optimizer:
            return last.params
        return [p for g in optimizer.param_groups for p in g["params"]]

    def state_for(self, optimizer: torch.optim.Optimizer) -> OptimizerState:
        state = self.states.get(id(optimizer))
        param_groups = optimizer.param_groups
        if len(param_groups) == 1:  # the common case, every step: no generator
            only = param_groups[0]["params"]
            groups: tuple[tuple[int, int], ...] = ((id(only), len(only)),)
        else:
            groups = tuple((id(g["params"]), len(g["params"])) for g in param_groups)
        if state is not None and state.groups == groups and state.ref() is optimizer:
            self.last_state = state
            return state  # every step: the parameter lists are the same lists as at the last step
        params = [p for g in optimizer.param_groups for p in g["params"]]
        signature = tuple(id(p) for p in params)
        if state is not None and state.ref() is not optimizer:  # a dead optimizer's id, reused
            del self.states[id(optimizer)]
            state = None
        if state is not None and state.signature == signature:
            state.groups = groups
            self.last_state = state
            return state
        layer_of = [self.models.layer_of(p, f"optimizer{len(self.states)}.param{i}") for i, p in enumerate(params)]
        state = OptimizerState(params, layer_of, signature, _weak(optimizer), groups=groups)
        if id(optimizer) not in self.states:
            self.timeline.optimizers.append(type(optimizer).__name__)
        self.states[id(optimizer)] = self.last_state = state
        return state

    def is_primary(self, optimizer: torch.optim.Optimizer, state: OptimizerState) -> bool:
        """Steps are counted on one optimizer: the first that steps (a GAN's second optimizer
        adds its gradients to the same step). A new optimizer takes its place when the old one is
        gone, or when it optimizes some of the same parameters: the script replaced it (a second
        fine-tuning phase over the unfrozen model), it did not add a companion."""
        self.replaced = False
        current = self.primary_ref() if self.primary_ref is not None else None
        if current is optimizer:
            return True
        if current is not None:
            old = self.states.get(id(current))
            if old is None or state.steps or not {id(p) for p in old.params} & set(state.signature):
                return False
            if set(old.signature) == set(state.signature):
                # Exactly the same parameters while the first is still alive: a second optimizer
                # over them (`optimizerG = Adam(netD.parameters())`), not its replacement.
                return False
        self.replaced = self.primary_ref is not None
        self.primary_ref = _weak(optimizer)
        return True

    def check_habits(self, state: OptimizerState, step: int, epoch: int | None) -> None:
        """Before the counted optimizer's step: were the gradients reset since the last one, and
        (once, when every optimizer has stepped) does each trainable parameter have one?"""
        habits = self.timeline.habits
        if habits.zero_grad_calls or habits.grads_carried != habits.steps_checked:
            carried = None  # missing_zero_grad can no longer fire: a reset was seen; no need to look
        else:
            carried = self.grad_carry.check(state.params, habits.zero_grad_calls, self.timeline.backward_calls)
        if carried is not None:
            habits.steps_checked += 1
            habits.grads_carried += int(carried)
        if not self.unoptimized_checked and step >= SETTLE_AFTER - 1 and self.explicit is None:
            self.unoptimized_checked = True
            self._check_unoptimized(step, epoch)

    def _check_unoptimized(self, step: int, epoch: int | None) -> None:
        """Parameters that require and receive gradients but that no optimizer updates (or only
        with a learning rate of 0): the optimizer was given a part of the model."""
        optimized: set[int] = set()
        at_zero_lr_ids: set[int] = set()
        for optimizer in self.alive():
            for group in optimizer.param_groups:
                at_zero = zero_lr(group.get("lr"))
                for p in group["params"]:
                    optimized.add(id(p))
                    if at_zero:
                        at_zero_lr_ids.add(id(p))
        idle: list[str] = []
        at_zero_lr: list[str] = []
        idle_numel = trainable = 0
        for root, p in self.models.trainable():
            trainable += p.numel()
            if p.grad is not None and (id(p) not in optimized or id(p) in at_zero_lr_ids):
                idle.append(root.param_names.get(id(p), "?"))
                idle_numel += p.numel()
                if id(p) in at_zero_lr_ids:
                    at_zero_lr.append(idle[-1])
        if idle:
            self.timeline.events.append(Event("unoptimized_parameters", step, epoch, {
                "params": idle, "numel": idle_numel, "trainable_numel": trainable,
                "zero_lr": at_zero_lr,
                "optimizers": len(self.states),
            }))

    def clear(self) -> None:
        self.states.clear()
        self.last_state = None


def _weak(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # no weak references to it: hold it
        return lambda: obj


def hparams(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The first param group's scalar settings (lr, weight_decay, momentum, betas, ...)."""
    out: dict[str, Any] = {}
    try:
        for key, value in optimizer.param_groups[0].items():
            if key in IMPLEMENTATION_OPTIONS:
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or value is None:
                out[key] = value
            elif isinstance(value, (int, float)):
                out[key] = float(value)
            elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
                out[key] = [float(v) for v in value]
    except Exception:
        pass
    return out


def current_lr(optimizer: torch.optim.Optimizer) -> float | None:
    try:
        lr = optimizer.param_groups[0].get("lr")
        return float(lr) if lr is not None else None
    except Exception:
        return None


def zero_lr(lr: Any) -> bool:
    """A learning rate of exactly 0 (a tensor, a bool or a scheduler's object is not judged): one
    test for both places that ask, so they cannot disagree."""
    return isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr == 0
