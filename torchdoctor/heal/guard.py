"""The healer's optimizer step pre-hook: skip a poisoned step, roll back a run gone non-finite.

It runs after torchdoctor's own pre-hook (it is installed after the probes), so the step's
numbers are already read: the recorder's step record holds the loss, the gradient norm and the
names of the parameters whose gradients are not finite. Deciding costs no device read then. An
optimizer step the recorder did not measure (a second optimizer in the same step, one not watched)
is checked here, which on CUDA reads one small tensor (the gradient norms) for that step.

A healthy step is left alone: nothing is written to the parameters, the gradients or the optimizer,
so a healthy run's numbers are bit-identical with and without the healer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ..timeline import Event, StepRecord, Timeline
from .snapshot import Snapshot, params_of

MAX_EVENTS = 200  # past these, interventions are counted in the last event ("more")
SHOWN_PARAMS = 5


class Errors(Protocol):
    def note(self, message: str, exc: BaseException | None = None) -> None: ...


@dataclass
class _Check:
    """What the step showed: its number, its loss (None: not seen) and the non-finite gradients."""

    step: int
    epoch: int | None
    loss: float | None
    nonfinite: list[str]
    grad_norm: float | None = None


class Healer:
    """Skips steps with non-finite gradients; clips a gradient norm more than `spike` times the
    median of the last good steps' at `clip_at` times that median; after `patience` bad steps in a
    row (a non-finite loss or non-finite gradients, or a loss above `climb` times the first one:
    a run climbing away), restores the last good copy (refreshed every `every` good steps)
    and divides every param group's learning rate by `factor`.

    `Healer(timeline, errors).install()` after the probes are installed, `.remove()` before they
    are removed. `errors` gets the healer's own failures (they never reach the script)."""

    def __init__(self, timeline: Timeline, errors: Errors | None = None, *, every: int = 50,
                 patience: int = 3, factor: float = 10.0, spike: float = 10.0, clip_at: float = 2.0,
                 climb: float = 4.0, window: int = 20) -> None:
        self.timeline = timeline
        self.errors = errors
        self.every = every
        self.patience = patience
        self.factor = factor
        self.spike = spike
        self.clip_at = clip_at
        self.climb = climb
        self.norms: dict[int, list[float]] = {}  # the last `window` good steps' gradient norms, per optimizer
        self.window = window
        self.first_losses: dict[int, float] = {}  # the first finite loss, per optimizer
        self.handle: Any = None
        self.snapshots: dict[int, Snapshot] = {}
        self.bad_losses: dict[int, int] = {}  # consecutive bad steps, per optimizer
        self.calls: dict[int, int] = {}  # steps of optimizers the recorder did not count
        self._seen: StepRecord | None = None

    def install(self) -> Healer:
        self.handle = register_optimizer_step_pre_hook(self._pre)
        return self

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.snapshots.clear()

    # -- the hook ---------------------------------------------------------------------------------
    def _pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        try:
            self._heal(optimizer)
        except Exception as exc:  # the healer must never break the patient
            if self.errors is not None:
                self.errors.note(f"heal: {type(exc).__name__}: {exc}", exc)
        return None

    def _heal(self, optimizer: torch.optim.Optimizer) -> None:
        check = self._check(optimizer)
        key = id(optimizer)
        finite_loss = check.loss is not None and math.isfinite(check.loss)
        # A bad step: its loss or its gradients non-finite (a loss so large that only its gradients
        # overflow would otherwise be skipped forever, the weights never changing).
        climbing = finite_loss and self._climbing(key, check.loss)
        bad = bool(check.nonfinite) or (check.loss is not None and not finite_loss) or climbing
        self.bad_losses[key] = self.bad_losses.get(key, 0) + 1 if bad else 0
        if self.bad_losses[key] >= self.patience and key in self.snapshots:
            self._rollback(optimizer, check, "a loss above {climb:g}x its start" if climbing else
                           "loss or gradients non-finite")
            self.bad_losses[key] = 0
            return
        if check.nonfinite:
            _skip(optimizer)
            self._record(check, {"action": "skip_step", "step": check.step,
                                 "nonfinite_params": check.nonfinite[:SHOWN_PARAMS],
                                 "nonfinite_count": len(check.nonfinite),
                                 "before": "non-finite gradients", "after": "step skipped"})
            return
        if self._clip(optimizer, check) or climbing:
            return  # not a good step: no copy of it is kept
        held = self.snapshots.get(key)
        if finite_loss and (held is None or check.step - held.step >= self.every):
            self.snapshots[key] = Snapshot(optimizer, check.step)

    def _climbing(self, key: int, loss: float) -> bool:
        """The loss above `climb` times the optimizer's first finite loss (a learning rate far too
        high has blown the loss up within a step or two, so later losses are no baseline)."""
        start = self.first_losses.get(key)
        if start is None:
            self.first_losses[key] = loss
            return False
        return start > 0 and loss > self.climb * start

    def _clip(self, optimizer: torch.optim.Optimizer, check: _Check) -> bool:
        """Clip a spike: a gradient norm `spike` times the recent good steps' median or more is cut
        to `clip_at` times that median. True when it clipped."""
        norm = check.grad_norm
        if norm is None or not math.isfinite(norm):
            return False
        recent = self.norms.setdefault(id(optimizer), [])
        median = sorted(recent)[len(recent) // 2] if len(recent) >= 5 else None
        if median is None or median <= 0 or norm < self.spike * median:
            recent.append(norm)
            del recent[: -self.window]
            return False
        max_norm = self.clip_at * median
        torch.nn.utils.clip_grad_norm_(list(params_of(optimizer)), max_norm)
        self._record(check, {"action": "clip", "step": check.step, "max_norm": max_norm, "grad_norm": norm,
                             "median": median,
                             "before": f"gradient norm {norm:.4g} ({norm / median:.0f}x the recent median)",
                             "after": f"clipped at max_norm {max_norm:.4g}"})
        return True

    def _rollback(self, optimizer: torch.optim.Optimizer, check: _Check, why: str) -> None:
        snapshot = self.snapshots[id(optimizer)]
        # the lr that diverged, not the copy's: a second rollback to the same copy lowers it again
        lrs_before = [_lr(group) for group in optimizer.param_groups]
        snapshot.restore(optimizer)
        for group, lr in zip(optimizer.param_groups, lrs_before, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr / self.factor)
            else:
                group["lr"] = lr / self.factor
        _skip(optimizer)  # these gradients are the bad weights': the step applies none of them
        lrs_after = [_lr(group) for group in optimizer.param_groups]
        self._record(check, {"action": "rollback", "step": check.step, "to_step": snapshot.step,
                             "lr_before": lrs_before[0], "lr_after": lrs_after[0],
                             "before": f"{why.format(climb=self.climb)} for {self.patience} steps in a row",
                             "after": f"weights and optimizer state of step {snapshot.step}, lr / {self.factor:g}"})

    # -- what the step showed -----------------------------------------------------------------------
    def _check(self, optimizer: torch.optim.Optimizer) -> _Check:
        """The recorder's numbers for this step when it just measured it; otherwise measured here."""
        record = self.timeline.steps[-1] if self.timeline.steps else None
        if record is not None and record is not self._seen:
            self._seen = record
            return _Check(record.step, record.epoch, record.loss, list(record.nonfinite_grads), record.grad_norm)
        key = id(optimizer)
        self.calls[key] = self.calls.get(key, 0) + 1
        step = record.step if record is not None else self.calls[key] - 1
        return _Check(step, record.epoch if record is not None else None, None, _nonfinite(optimizer))

    def _record(self, check: _Check, data: dict[str, Any]) -> None:
        events = self.timeline.events
        healed = [e for e in events[-1:] if e.kind == "healed"]
        if sum(1 for e in events if e.kind == "healed") >= MAX_EVENTS and healed:
            healed[0].data["more"] = healed[0].data.get("more", 0) + 1
            return
        events.append(Event("healed", check.step, check.epoch, data))


def _skip(optimizer: torch.optim.Optimizer) -> None:
    """No gradient, no update: SGD's momentum, weight decay and Adam's moments and step count are
    all left as they were (optimizers pass over a parameter whose grad is None)."""
    for p in params_of(optimizer):
        p.grad = None


def _lr(group: dict[str, Any]) -> float:
    lr = group["lr"]
    return float(lr) if not isinstance(lr, torch.Tensor) else float(lr.item())


def _nonfinite(optimizer: torch.optim.Optimizer) -> list[str]:
    """The positions (`param3`) of the optimizer's parameters whose gradient holds NaN or Inf: one
    norm per gradient, read once (a huge finite gradient whose norm overflows is checked itself)."""
    params = [(i, p) for i, p in enumerate(params_of(optimizer)) if p.grad is not None]
    if not params:
        return []
    by_device: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
    for i, p in params:
        by_device.setdefault(p.grad.device, []).append((i, p.grad))
    out: list[str] = []
    for entries in by_device.values():
        grads = [g for _, g in entries]
        norms = torch.stack(torch._foreach_norm(grads)).float().tolist()
        for (i, g), norm in zip(entries, norms, strict=True):
            if not math.isfinite(norm) and not bool(torch.isfinite(g).all()):
                out.append(f"param{i}")
    return sorted(out, key=lambda name: int(name[5:]))
