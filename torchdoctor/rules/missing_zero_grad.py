"""missing_zero_grad: gradients accumulate across steps because nothing resets them."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from .base import Param, finding_for, rule


@rule("missing_zero_grad", Severity.ERROR, "Gradients accumulate across steps that are not meant to accumulate",
      {"min_steps": Param(3, "steps compared before a verdict")})
def missing_zero_grad(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: no `zero_grad()` anywhere in the run (neither the optimizer's nor the
    model's), and before every optimizer step the gradients were the very tensors of the step
    before, not reset to None or zeroed: each backward added to all the previous ones.

    Why it matters: step k applies the sum of k batches' gradients, so the effective learning
    rate grows with every step; training diverges or crawls with a gradient that mostly points
    where the first batches wanted.

    Not flagged: deliberate gradient accumulation (`zero_grad()` every k micro-batches, with or
    without a step in between), gradients reset by hand (`p.grad = None` or `p.grad.zero_()`).
    """
    habits = tl.habits
    if habits.zero_grad_calls or habits.steps_checked < p["min_steps"]:
        return
    if habits.grads_carried != habits.steps_checked:
        return
    norms = [r.grad_norm for r in tl.steps if r.grad_norm is not None]
    growth = norms[-1] / norms[0] if len(norms) >= 2 and norms[0] > 0 else None
    first = tl.steps[1].step if len(tl.steps) > 1 else None
    title = (f"No zero_grad() in {len(tl.steps)} steps: each step's gradients were added to all the earlier ones"
             + (f" (gradient norm {fmt(norms[0])} → {fmt(norms[-1])})" if growth is not None else ""))
    yield finding_for(
        "missing_zero_grad", title, step=first,
        evidence={"zero_grad_calls": 0, "steps_checked": habits.steps_checked,
                  "steps_carried": habits.grads_carried, "first_grad_norm": norms[0] if norms else None,
                  "last_grad_norm": norms[-1] if norms else None, "growth": growth},
        fixes=[Fix("call_zero_grad",
                   "Reset the gradients once per optimizer step, before the backward.",
                   {},
                   "for x, y in loader:\n    optimizer.zero_grad()  # add this line\n"
                   "    loss = criterion(model(x), y)\n    loss.backward()\n    optimizer.step()"),
               Fix("accumulate_deliberately",
                   "If you meant to accumulate over k batches: divide the loss by k, step and zero every k.",
                   {"k": 4},
                   "loss = criterion(model(x), y) / k\nloss.backward()\nif (i + 1) % k == 0:\n"
                   "    optimizer.step()\n    optimizer.zero_grad()")],
    )
