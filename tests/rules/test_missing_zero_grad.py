"""missing_zero_grad on hand-made habits: no zero_grad() and every step's gradients carried into the
next, beside deliberate accumulation and gradients reset by hand."""

from __future__ import annotations

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline


def carried_run(steps: int = 30, zero_grad_calls: int = 0, carried: int | None = None,
                norm: float = 0.5) -> Timeline:
    """`steps` optimizer steps; each but the first compared with the one before (the probe has
    nothing to compare the first with), `carried` of them found holding the previous step's
    gradient tensors unreset. Without zero_grad the norm grows with the batches summed."""
    summed = zero_grad_calls == 0 and carried != 0
    tl = make_timeline([norm * (i + 1) if summed else norm for i in range(steps)])
    habits = tl.habits
    habits.zero_grad_calls = zero_grad_calls
    habits.steps_checked = steps - 1
    habits.grads_carried = steps - 1 if carried is None else carried
    return tl


def test_a_loop_without_zero_grad_is_found():
    (finding,) = findings("missing_zero_grad", carried_run())
    assert finding.severity is Severity.ERROR
    assert finding.step == 1 and finding.where is None
    assert finding.evidence == {"zero_grad_calls": 0, "steps_checked": 29, "steps_carried": 29,
                                "first_grad_norm": 0.5, "last_grad_norm": 15.0, "growth": 30.0}
    assert finding.title == ("No zero_grad() in 30 steps: each step's gradients were added to all the earlier ones "
                             "(gradient norm 0.5 → 15)")
    call, accumulate = finding.fixes
    assert call.action == "call_zero_grad" and call.params == {} and "optimizer.zero_grad()" in call.snippet
    assert accumulate.action == "accumulate_deliberately" and accumulate.params == {"k": 4}


def test_deliberate_gradient_accumulation_is_clean():
    # zero_grad() every 4 micro-batches, one step per 4: 8 steps, 7 compared, none carried
    tl = carried_run(steps=8, zero_grad_calls=8, carried=0)
    assert findings("missing_zero_grad", tl) == []


def test_gradients_reset_by_hand_are_clean():
    # `p.grad = None` (or p.grad.zero_()) each step: no zero_grad() call, but nothing carried
    assert findings("missing_zero_grad", carried_run(carried=0)) == []
    # reset on some steps only, a schedule of the script's own: not the bug this rule names
    assert findings("missing_zero_grad", carried_run(carried=20)) == []


def test_the_steps_compared_are_a_threshold():
    tl = carried_run(steps=3)  # 2 steps compared, both carried
    assert findings("missing_zero_grad", tl) == []
    (finding,) = findings("missing_zero_grad", tl, min_steps=2)
    assert finding.evidence["steps_checked"] == 2


def test_an_empty_timeline_is_clean():
    assert findings("missing_zero_grad", Timeline()) == []
