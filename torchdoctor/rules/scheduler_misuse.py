"""scheduler_misuse: a learning-rate scheduler stepped out of order, too often, or for nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from .base import Param, finding_for, rule

# Schedulers whose settings usually count epochs; OneCycleLR, LinearLR, CyclicLR and LambdaLR are
# stepped per batch by design and never judged for it.
PER_EPOCH = frozenset({"StepLR", "MultiStepLR", "CosineAnnealingLR", "ExponentialLR"})
CURVE_POINTS = 8


@rule("scheduler_misuse", Severity.WARNING, "A learning-rate scheduler stepped out of order, per batch, or for nothing",
      {"overrun": Param(2.0, "scheduler steps over its horizon (T_max, step_size, last milestone) to flag"),
       "min_decay": Param(1e-4, "ExponentialLR: the lr factor reached that says it was stepped per batch")})
def scheduler_misuse(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: `scheduler.step()` called before its optimizer's first `step()` (the first
    value of the schedule is skipped; PyTorch warns about it); a per-epoch scheduler (StepLR,
    MultiStepLR, CosineAnnealingLR, ExponentialLR) stepped once per batch, so that its schedule,
    shorter than one epoch of batches, runs out (or cycles) far sooner than its `T_max` /
    `step_size` says; a scheduler whose optimizer never steps.

    Why it matters: stepped per batch, a `StepLR(step_size=30)` meant for 30 epochs decays every
    30 batches and the learning rate is near 0 after the first epoch; a cosine schedule over 10
    "epochs" restarts every 10 batches. Training stalls or oscillates for no visible reason.

    Not flagged: schedulers made to be stepped per batch (OneCycleLR, LinearLR warmup, CyclicLR,
    LambdaLR), a CosineAnnealingLR or StepLR whose `T_max` / `step_size` counts batches (longer
    than an epoch), any scheduler stepped once per epoch, ReduceLROnPlateau, and a first
    scheduler step ahead of an optimizer step GradScaler skipped on overflow.
    """
    for entry in tl.habits.schedulers:
        finding = _never_stepped(entry) or _per_batch(tl, entry, p) or _before_optimizer(tl, entry)
        if finding is not None:
            yield finding


def _never_stepped(entry: dict[str, Any]) -> Finding | None:
    if entry.get("optimizer_steps") or entry.get("steps", 0) < 2:
        return None
    name, opt = entry["scheduler"], entry.get("optimizer") or "optimizer"
    return finding_for(
        "scheduler_misuse", f"{name} stepped {entry['steps']} times, but its {opt} never stepped",
        step=entry.get("first_step"), where=None,
        evidence={"scheduler": name, "optimizer": opt, "why": "optimizer never steps",
                  "scheduler_steps": entry["steps"], "optimizer_steps": 0, "lr_curve": []},
        fixes=[Fix("bind_scheduler", f"Build the scheduler on the optimizer that steps: {name}(optimizer, ...) "
                   "with the same optimizer object whose step() the loop calls.", {},
                   f"optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
                   f"scheduler = torch.optim.lr_scheduler.{name}(optimizer, ...)")])


def _before_optimizer(tl: Timeline, entry: dict[str, Any]) -> Finding | None:
    if not entry.get("before_optimizer") or not entry.get("optimizer_steps") or tl.amp.skipped:
        return None
    name = entry["scheduler"]
    return finding_for(
        "scheduler_misuse", f"{name}.step() was called before the first optimizer.step(): the schedule's first "
        "value is skipped", step=entry.get("first_step"), where=None,
        evidence={"scheduler": name, "optimizer": entry.get("optimizer"),
                  "why": "scheduler.step() before optimizer.step()", "scheduler_steps": entry["steps"],
                  "optimizer_steps": entry["optimizer_steps"],
                  "steps_before_optimizer": entry["before_optimizer"], "lr_curve": _curve(tl)},
        fixes=[Fix("step_after_optimizer", "Call scheduler.step() after optimizer.step() (at the end of the "
                   "batch or epoch), never before the first one.", {},
                   "for epoch in range(epochs):\n    train_one_epoch(model, optimizer)  # optimizer.step() inside\n"
                   "    scheduler.step()  # after, not before")])


def _horizon(entry: dict[str, Any]) -> tuple[str, float] | None:
    settings = entry.get("settings") or {}
    kind = entry["scheduler"]
    key = {"CosineAnnealingLR": "T_max", "StepLR": "step_size", "MultiStepLR": "milestones"}.get(kind)
    value = settings.get(key) if key else None
    if key == "milestones":
        value = max(value) if value else None
    return (key, float(value)) if isinstance(value, (int, float)) and value > 0 else None


def _per_batch(tl: Timeline, entry: dict[str, Any], p: dict[str, float]) -> Finding | None:
    kind, epochs = entry["scheduler"], tl.run.epochs
    steps, opt_steps = entry.get("steps", 0), entry.get("optimizer_steps", 0)
    if kind not in PER_EPOCH or not epochs or not opt_steps:
        return None
    per_epoch = opt_steps / epochs  # optimizer steps (batches) per epoch
    if per_epoch < 2 or steps / epochs < max(2.0, 0.5 * per_epoch):
        return None  # stepped once per epoch, or a loader too short to tell
    horizon = _horizon(entry)
    settings = entry.get("settings") or {}
    if horizon is not None:
        key, value = horizon
        if value >= per_epoch or steps < p["overrun"] * value:
            return None  # its horizon counts batches, or the schedule has not run out
        suggested = int(round(value * per_epoch))
        numbers = {key: suggested, "batches_per_epoch": round(per_epoch), "current": value}
        setting = f"{key}={value:g}"
        alt = f"or count its {key} in batches: {key}={suggested} ({value:g} epochs x {round(per_epoch)} batches)"
    else:
        gamma = settings.get("gamma")
        if not isinstance(gamma, (int, float)) or not 0 < gamma < 1 or gamma ** steps > p["min_decay"]:
            return None
        suggested_gamma = gamma ** (1 / per_epoch)
        numbers = {"gamma": round(suggested_gamma, 6), "batches_per_epoch": round(per_epoch), "current": gamma}
        setting = f"gamma={gamma:g}"
        alt = f"or a per-batch gamma={suggested_gamma:.6f} (gamma ** (1 / {round(per_epoch)} batches))"
    curve = _curve(tl)
    lrs = [lr for r in tl.steps if (lr := r.lr) is not None]
    drop = f" (lr {fmt(lrs[0])} → {fmt(lrs[-1])}, lowest {fmt(min(lrs))})" if lrs else ""
    return finding_for(
        "scheduler_misuse",
        f"{kind}({setting}) was stepped once per batch, {steps} times in {epochs} epochs: a schedule meant for "
        f"epochs ran its course within the first one{drop}",
        step=entry.get("first_step"), where=None,
        evidence={"scheduler": kind, "optimizer": entry.get("optimizer"),
                  "why": "per-epoch scheduler stepped per batch", "scheduler_steps": steps,
                  "optimizer_steps": opt_steps, "epochs": epochs,
                  "batches_per_epoch": round(per_epoch), "settings": settings, "lr_curve": curve},
        fixes=[Fix("step_per_epoch", f"Call scheduler.step() once per epoch, after the epoch's batches, {alt}.",
                   numbers, "for epoch in range(epochs):\n    for x, y in loader:\n        ...\n"
                   "        optimizer.step()\n    scheduler.step()  # once per epoch")])


def _curve(tl: Timeline) -> list[tuple[int, float]]:
    """The learning rate at a few evenly spaced steps, the first and the last included."""
    points = [(r.step, r.lr) for r in tl.steps if r.lr is not None]
    if len(points) <= CURVE_POINTS:
        return points
    stride = (len(points) - 1) / (CURVE_POINTS - 1)
    return [points[round(i * stride)] for i in range(CURVE_POINTS)]
