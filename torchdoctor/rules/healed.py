"""healed: what `--heal` did inside the run, one finding per intervention (skips in a row: one)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..findings import Finding, Fix, Severity
from ..timeline import Event, Timeline
from ._fixes import at_source, located_snippet
from .base import finding_for, rule

SHOWN_STEPS = 20

# The findings each intervention answers: their consequence (a run that dies in NaN, blows up or
# climbs away) is what the intervention stopped.
ANSWERS: dict[str, frozenset[str]] = {
    "skip_step": frozenset({"nonfinite_gradient", "nonfinite_loss"}),
    "rollback": frozenset({"nonfinite_gradient", "nonfinite_loss", "exploding_gradients", "divergence"}),
    "clip": frozenset({"exploding_gradients"}),
}
RECOVERED_STEPS = 3  # finite losses after the last intervention needed to call the run saved


def settle(findings: list[Finding], tl: Timeline) -> list[Finding]:
    """Severity from consequence under `--heal`: a finding an intervention answered, in a run whose
    loss stayed finite after the last intervention, is lowered to info, says it was healed, and
    stays in the default view (evidence `healed_in_flight`): the cause is still in the script and
    its fix is still the one to make. A run --heal did not save keeps every finding as it was."""
    events = tl.events_of("healed")
    if not events:
        return findings
    answered = frozenset().union(*(ANSWERS.get(str(e.data.get("action")), frozenset()) for e in events))
    last = max((e.step for e in events if e.step is not None), default=None)
    after = [v for s, v in tl.loss_series() if last is not None and s > last]
    if len(after) < RECOVERED_STEPS or not all(math.isfinite(v) for v in after):
        return findings
    for f in findings:
        if f.code in answered and f.severity > Severity.INFO:
            f.evidence = {**f.evidence, "healed_in_flight": True, "severity_without_heal": f.severity.label}
            f.severity = Severity.INFO
            f.title = f"{f.title} (healed in flight by --heal: see healed)"
    return findings


@rule("healed", Severity.INFO,
      "--heal acted inside the run (skipped a step, rolled back, lowered the lr, clipped)")
def healed(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: every time `torchdoctor run --heal` changed the run while it ran. A step whose
    gradients held NaN or Inf was skipped (no parameter, momentum or Adam moment changed); a gradient
    norm ten times the recent steps' median was clipped at twice that median; after several steps
    in a row with a non-finite loss (or a loss four times its first), the weights and the
    optimizer's state were put back to the last copy kept in memory and every learning rate divided
    by 10. The findings an intervention answered (non-finite losses and gradients, explosions,
    divergence), in a run that went on finite, are lowered to info and say they were healed.

    Why it matters: the run you got is not the run your script describes. Healing keeps a long run
    alive; the cause is still in the script (see the other findings: non-finite gradients, a
    divergence), and the fix that makes the heal unnecessary is the one to keep.

    Not flagged: a run with heal on that needed no intervention (its numbers are the plain run's).
    """
    events = tl.events_of("healed")
    for group in _groups(events):
        first = group[0]
        action = first.data.get("action", "?")
        if action == "skip_step":
            yield _skipped(group)
        elif action == "rollback":
            yield _rolled_back(tl, first)
        elif action == "clip":
            yield _clipped(group)
        else:
            data = first.data
            yield finding_for("healed", f"--heal: {action} at step {first.step}", step=first.step,
                              epoch=first.epoch, evidence=_evidence(first, data))


def _groups(events: list[Event]) -> list[list[Event]]:
    """Skipped steps in a row are one intervention, clipped steps in a row another; every other
    event is its own."""
    out: list[list[Event]] = []
    for e in events:
        last = out[-1][-1] if out else None
        action = e.data.get("action")
        if (last is not None and action in ("skip_step", "clip") and last.data.get("action") == action
                and e.step is not None and last.step is not None and e.step - last.step <= 1):
            out[-1].append(e)
        else:
            out.append([e])
    return out


def _evidence(event: Event, data: dict[str, Any]) -> dict[str, Any]:
    return {"step": event.step, "action": data.get("action"), "before": data.get("before"),
            "after": data.get("after"), **{k: v for k, v in data.items() if k not in ("step", "action")}}


def _skipped(group: list[Event]) -> Finding:
    first, last = group[0], group[-1]
    steps = [e.step for e in group]
    more = sum(e.data.get("more", 0) for e in group)
    when = f"step {first.step}" if len(group) == 1 else f"steps {first.step}-{last.step} ({len(group)} steps)"
    params = first.data.get("nonfinite_params") or []
    shown = ", ".join(str(n) for n in params)
    title = (f"--heal skipped {when}: non-finite gradients" + (f" in {shown}" if shown else "")
             + "; the weights and the optimizer's state were left as they were")
    evidence = _evidence(first, first.data)
    evidence.update(steps=steps[:SHOWN_STEPS], count=len(group) + more)
    return finding_for("healed", title, step=first.step, epoch=first.epoch, evidence=evidence, fixes=[
        Fix("find_nonfinite_source",
            "The skip hid the cause, it did not remove it: the non-finite-gradient finding names where the "
            "first NaN/Inf came from; fix that batch or operation (or clip the gradients) so no step needs skipping.",
            {"steps": steps[:SHOWN_STEPS]}),
    ])


def _clipped(group: list[Event]) -> Finding:
    first, last = group[0], group[-1]
    when = f"step {first.step}" if len(group) == 1 else f"steps {first.step}-{last.step} ({len(group)} steps)"
    max_norm = first.data.get("max_norm")
    peak = max((e.data.get("grad_norm") or 0.0 for e in group), default=0.0)
    shown = f" at max_norm {max_norm:.3g}" if isinstance(max_norm, float) else ""
    median = first.data.get("median")
    spiked = f" ({peak / median:.0f}x the recent steps' median)" if isinstance(median, float) and median > 0 else ""
    title = f"--heal clipped the gradients{shown} on {when}: norms up to {peak:.4g}{spiked}"
    evidence = _evidence(first, first.data)
    evidence.update(steps=[e.step for e in group][:SHOWN_STEPS], count=len(group), peak_grad_norm=peak)
    fixes = [Fix("clip_gradients",
                 "Clip in the script, where the healed run clipped: torch.nn.utils.clip_grad_norm_("
                 f"model.parameters(), max_norm={max_norm:.3g}) between backward() and step(); and see why the "
                 "norm spiked (the learning rate, a bad batch).", {"max_norm": max_norm},
                 f"loss.backward()\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={max_norm:.3g})\n"
                 "optimizer.step()")] if isinstance(max_norm, float) else []
    return finding_for("healed", title, step=first.step, epoch=first.epoch, evidence=evidence, fixes=fixes)


def _rolled_back(tl: Timeline, event: Event) -> Finding:
    data = event.data
    lr_before, lr_after = data.get("lr_before"), data.get("lr_after")
    lrs = f" and lowered the learning rate {lr_before:g} -> {lr_after:g}" if _numbers(lr_before, lr_after) else ""
    title = (f"--heal rolled back at step {event.step} to the copy of step {data.get('to_step')}{lrs}: "
             f"{data.get('before', 'the loss was non-finite')}")
    fixes = []
    if isinstance(lr_after, float):
        location = at_source(tl, "optimizer", "lr", f"{lr_after:g}", position=1)
        snippet = located_snippet(location) if location else None
        fixes.append(Fix("lower_learning_rate",
                         f"Start at the learning rate the healed run went on with, {lr_after:g}: at {lr_before:g} "
                         "the loss blew up.", {"lr": lr_after}, snippet, location=location))
    return finding_for("healed", title, step=event.step, epoch=event.epoch, evidence=_evidence(event, data),
                       fixes=fixes)


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) for v in values)
