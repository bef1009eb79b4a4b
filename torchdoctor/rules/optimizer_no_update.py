"""optimizer_no_update: optimizer steps that could change no parameter."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._fixes import USUAL_LR
from .base import Param, finding_for, rule

ZEROED = "zero_grad() between backward() and step()"
NO_GRAD = "every gradient None"
ZERO_LR = "learning rate 0"


@rule("optimizer_no_update", Severity.ERROR, "Optimizer steps that changed no parameter",
      {"min_steps": Param(3, "steps that changed nothing before a verdict"),
       "min_share": Param(0.5, "share of the optimizer's steps that changed nothing")})
def optimizer_no_update(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: `optimizer.step()` calls that cannot change any parameter, on most of an
    optimizer's steps: the gradients were reset between `backward()` and `step()` (a
    `zero_grad()` after the backward: every gradient None, or zeroed in place), every parameter's
    gradient was None although a backward ran (the loss does not reach them), or every param group
    had a learning rate of 0.

    Why it matters: the loop runs, the loss is computed and printed, and the model never learns;
    nothing crashes, so hours go by before anyone notices the flat curve.

    Not flagged: gradient accumulation (a step every k backwards), a fine-tune whose frozen
    parameters have no gradient while the head has one, LBFGS and other steps that compute their
    gradients in a closure, a step GradScaler skips on overflow (amp_overflow), and a warmup that
    starts at a learning rate of 0 for its first steps only.
    """
    for entry in tl.habits.no_update:
        bad, steps = entry.get("no_update", 0), entry.get("steps", 0)
        if bad < p["min_steps"] or not steps or bad < p["min_share"] * steps:
            continue
        why = entry.get("why") or {}
        reason = max(why, key=why.get) if why else NO_GRAD
        name = entry.get("optimizer") or "optimizer"
        yield finding_for(
            "optimizer_no_update",
            f"{bad} of {steps} {name} steps changed no parameter: {reason}",
            step=entry.get("first_step"),
            where=None,
            evidence={"step": entry.get("first_step"), "optimizer": name, "why": reason, "reasons": dict(why),
                      "no_update_steps": bad, "steps": steps},
            fixes=[_fix(tl, reason, name)],
        )


def _fix(tl: Timeline, reason: str, name: str) -> Fix:
    if reason == ZEROED:
        return Fix("move_zero_grad",
                   "Reset the gradients before the backward (or after step()), never between backward() and step().",
                   {}, "optimizer.zero_grad()\nloss = criterion(model(x), y)\nloss.backward()\noptimizer.step()")
    if reason == ZERO_LR:
        lr = USUAL_LR.get(name, 1e-3)
        return Fix("set_learning_rate",
                   f"Every param group has lr=0: give {name} a learning rate, e.g. {fmt(lr)}, or check the "
                   "scheduler that set it to 0.",
                   {"lr": lr}, f"optimizer = torch.optim.{name}(model.parameters(), lr={lr:g})")
    return Fix("connect_loss",
               "No gradient reached the optimizer's parameters: compute the loss from the model's output (no "
               ".detach(), .item() or torch.no_grad() on the way) and give the optimizer the model being trained.",
               {}, "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)\n"
                   "loss = criterion(model(x), y)  # not model(x).detach()\nloss.backward()\noptimizer.step()")
