"""healed on hand-made `healed` events, as torchdoctor/heal records them: skipped steps in a row are
one finding, a rollback is its own with the lowered lr as its fix, a run without events has none."""

from __future__ import annotations

from tests.rules.timelines import Event, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.rules import REGISTRY
from torchdoctor.rules.healed import healed
from torchdoctor.timeline import Timeline


def findings(code: str, tl: Timeline):
    """The catalogue's rule once it is listed there (rules/__init__.py), the module's until then."""
    rule = REGISTRY.get(code, healed)
    assert rule.code == code
    return rule.run(tl, rule.defaults())


def skip(step: int, **extra: object) -> Event:
    return Event("healed", step, 0, {"action": "skip_step", "step": step, "nonfinite_params": ["fc.weight"],
                                     "nonfinite_count": 1, "before": "non-finite gradients",
                                     "after": "step skipped", **extra})


def rollback(step: int, to_step: int, lr_before: float, lr_after: float) -> Event:
    return Event("healed", step, 1, {"action": "rollback", "step": step, "to_step": to_step,
                                     "lr_before": lr_before, "lr_after": lr_after,
                                     "before": "loss or gradients non-finite for 3 steps in a row",
                                     "after": f"weights and optimizer state of step {to_step}, lr / 10"})


def test_no_intervention_no_finding():
    assert findings("healed", make_timeline([1.0] * 10)) == []


def test_one_skipped_step_is_an_info_finding_with_step_action_before_after():
    tl = make_timeline([1.0] * 10)
    tl.events.append(skip(5))
    (f,) = findings("healed", tl)
    assert f.code == "healed" and f.severity is Severity.INFO and f.step == 5 and f.epoch == 0
    assert f.evidence["step"] == 5 and f.evidence["action"] == "skip_step"
    assert f.evidence["before"] == "non-finite gradients" and f.evidence["after"] == "step skipped"
    assert f.evidence["steps"] == [5] and f.evidence["count"] == 1
    assert "skipped step 5" in f.title and "fc.weight" in f.title
    assert f.fixes and f.fixes[0].action == "find_nonfinite_source"


def test_skips_in_a_row_are_one_finding_and_apart_are_two():
    tl = make_timeline([1.0] * 20)
    tl.events += [skip(5), skip(6), skip(7), skip(12, more=4)]
    first, second = findings("healed", tl)
    assert first.evidence["steps"] == [5, 6, 7] and first.evidence["count"] == 3
    assert "steps 5-7 (3 steps)" in first.title
    assert second.step == 12 and second.evidence["count"] == 5  # 4 more counted past the event cap


def test_a_rollback_says_where_to_and_the_lr_it_lowered_and_fixes_with_that_lr():
    tl = make_timeline([1.0] * 20)
    tl.events += [skip(8), skip(9), rollback(10, 0, 3.0, 0.3)]
    skipped, rolled = findings("healed", tl)
    assert skipped.evidence["steps"] == [8, 9]
    assert rolled.severity is Severity.INFO and rolled.step == 10 and rolled.epoch == 1
    assert rolled.evidence["action"] == "rollback" and rolled.evidence["to_step"] == 0
    assert rolled.evidence["lr_before"] == 3.0 and rolled.evidence["lr_after"] == 0.3
    assert rolled.evidence["before"].startswith("loss or gradients non-finite")
    assert "rolled back at step 10 to the copy of step 0" in rolled.title and "3 -> 0.3" in rolled.title
    (fix,) = rolled.fixes
    assert fix.action == "lower_learning_rate" and fix.params == {"lr": 0.3} and fix.location is None


def test_the_rollback_fix_rewrites_the_users_optimizer_line_when_it_was_recorded():
    tl = make_timeline([1.0] * 20)
    tl.sources["optimizer"] = {"file": "train.py", "line": 12,
                               "text": "optimizer = optim.SGD(model.parameters(), lr=3.0, momentum=0.9)"}
    tl.events.append(rollback(10, 0, 3.0, 0.3))
    (f,) = findings("healed", tl)
    (fix,) = f.fixes
    assert fix.location is not None and fix.location["line"] == 12
    assert fix.location["after"] == "optimizer = optim.SGD(model.parameters(), lr=0.3, momentum=0.9)"
