"""Training invariants checked on the Python side only (no device read of their own): was the
model in train() when it was trained, could an optimizer step change any parameter, and how the
LR schedulers were stepped against their optimizers.

Every check reads attributes PyTorch already holds on the host (`module.training`, `p.grad is
None`, a param group's `lr`) or the norm the step's single read-back already made.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from ..timeline import Timeline
from .optimizers import zero_lr

SCHEDULER_SETTINGS = ("T_max", "step_size", "milestones", "gamma", "total_steps", "eta_min", "T_0")
MAX_SCHEDULERS = 16


def _ref(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


class OptimizerCounts:
    """One optimizer as these checks see it: its steps, the backward() count at its last step,
    and its steps that changed nothing, by reason."""

    def __init__(self, optimizer: Any, index: int) -> None:
        self.ref = _ref(optimizer)
        self.name = type(optimizer).__name__
        self.index = index
        self.steps = 0
        self.backwards_at_step = 0
        self.no_update = 0
        self.first_step: int | None = None
        self.why: dict[str, int] = {}
        self.overlaps: dict[int, bool] = {}  # id(model) -> holds some of its parameters

    def note(self, reason: str, step: int) -> None:
        self.no_update += 1
        self.why[reason] = self.why.get(reason, 0) + 1
        if self.first_step is None:
            self.first_step = step


class Invariants:
    def __init__(self, timeline: Timeline, params_of: Callable[[Any], list[torch.nn.Parameter]]) -> None:
        self.timeline = timeline
        self.params_of = params_of  # Optimizers.params_of: the list state_for() built this step
        self.counts: dict[int, OptimizerCounts] = {}
        # id(model) -> (model, its training flag at its last forward with gradients on, label)
        self.modes: dict[int, tuple[Callable[[], Any], bool, str]] = {}
        self.zero_after_backward = False  # a zero_grad() came after the last backward()
        self.pending_zeroed: OptimizerCounts | None = None  # confirmed by the step's read-back norm
        self.schedulers: dict[int, tuple[Callable[[], Any], dict[str, Any]]] = {}

    # -- events -------------------------------------------------------------------------------
    def on_forward(self, module: torch.nn.Module, state: Any) -> None:
        """A root model's forward (`state`: its RootState): with gradients on it is training,
        whatever its mode says."""
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return
        training = bool(module.training)
        label = state.info.label if state.info is not None else type(module).__name__
        known = self.modes.get(id(module))
        if known is not None and known[1] == training and known[2] == label and known[0]() is module:
            return  # as at its last forward: nothing new
        self.modes[id(module)] = (_ref(module), training, label)

    def on_backward(self) -> None:
        self.zero_after_backward = False

    def on_zero_grad(self) -> None:
        self.zero_after_backward = True

    def counts_for(self, optimizer: Any) -> OptimizerCounts:
        counts = self.counts.get(id(optimizer))
        if counts is None or counts.ref() is not optimizer:
            counts = OptimizerCounts(optimizer, len(self.counts))
            self.counts[id(optimizer)] = counts
        return counts

    def before_step(self, optimizer: Any, step: int, counted: bool) -> None:
        """Before an optimizer's step (after the recorder's own accounting of it)."""
        counts = self.counts_for(optimizer)
        counts.steps += 1
        backwards = self.timeline.backward_calls - counts.backwards_at_step
        counts.backwards_at_step = self.timeline.backward_calls
        if counted:
            self._check_mode(optimizer, counts, step)
        if backwards <= 0:
            return  # a closure computes the gradients inside step() (LBFGS), or nothing to judge
        params = self.params_of(optimizer)
        if params and params[0].grad is None and all(p.grad is None for p in params):  # the first says no, every step
            counts.note("zero_grad() between backward() and step()" if self.zero_after_backward
                        else "every gradient None", step)
            return
        groups = optimizer.param_groups
        if groups and zero_lr(groups[0].get("lr")) and all(zero_lr(g.get("lr")) for g in groups):
            counts.note("learning rate 0", step)
            return
        if self.zero_after_backward and counted:
            self.pending_zeroed = counts

    def after_step(self, step: int) -> None:
        """The step's read-back is done: gradients zeroed in place (set_to_none=False) have norm 0."""
        counts, self.pending_zeroed = self.pending_zeroed, None
        if counts is None or not self.timeline.steps:
            return
        if self.timeline.steps[-1].grad_norm == 0.0:
            counts.note("zero_grad() between backward() and step()", step)

    def _check_mode(self, optimizer: Any, counts: OptimizerCounts, step: int) -> None:
        ids: set[int] | None = None
        in_eval: str | None = None
        trained = False
        for key, (ref, training, label) in list(self.modes.items()):
            model = ref()
            if model is None:
                del self.modes[key]
                continue
            overlaps = counts.overlaps.get(key)
            if overlaps is None:
                ids = ids if ids is not None else {id(p) for g in optimizer.param_groups for p in g["params"]}
                overlaps = counts.overlaps[key] = any(id(p) in ids for p in model.parameters())
            if not overlaps:
                continue
            trained = True
            if not training:
                in_eval = label
        if not trained:
            return
        habits = self.timeline.habits
        if in_eval is None:
            habits.train_mode_steps += 1
            return
        habits.eval_mode_steps += 1
        if habits.eval_mode_first_step is None:
            habits.eval_mode_first_step = step
            habits.eval_mode_model = in_eval

    def on_scheduler_step(self, scheduler: Any, step: int) -> None:
        """A scheduler's step() (not the one its constructor makes)."""
        entry = self.schedulers.get(id(scheduler))
        if entry is None or entry[0]() is not scheduler:
            if len(self.schedulers) >= MAX_SCHEDULERS:
                return
            optimizer = getattr(scheduler, "optimizer", None)
            settings = {k: _plain(getattr(scheduler, k)) for k in SCHEDULER_SETTINGS if hasattr(scheduler, k)}
            entry = (_ref(scheduler), {"scheduler": type(scheduler).__name__,
                                       "optimizer": type(optimizer).__name__ if optimizer is not None else None,
                                       "steps": 0, "optimizer_steps": 0, "before_optimizer": 0,
                                       "first_step": step, "settings": settings,
                                       "_counts": self.counts_for(optimizer) if optimizer is not None else None})
            self.schedulers[id(scheduler)] = entry
        data = entry[1]
        data["steps"] += 1
        counts = data["_counts"]
        if counts is None or counts.steps == 0:
            data["before_optimizer"] += 1

    def finish(self) -> None:
        habits = self.timeline.habits
        habits.no_update = [{"optimizer": c.name, "index": c.index, "steps": c.steps, "no_update": c.no_update,
                             "first_step": c.first_step, "why": dict(c.why)} for c in self.counts.values() if c.steps]
        out = []
        for _, data in self.schedulers.values():
            counts = data["_counts"]  # held, not looked up: the optimizer is usually gone by now
            steps = counts.steps if counts is not None else 0
            out.append({**{k: v for k, v in data.items() if not k.startswith("_")}, "optimizer_steps": steps})
        habits.schedulers = out

    def clear(self) -> None:
        self.counts.clear()
        self.modes.clear()
        self.schedulers.clear()
        self.pending_zeroed = None


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "Counter":
        return sorted(int(v) for v in value) if all(isinstance(v, int) for v in value) else None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    return None

