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


def clip(step: int, norm: float = 500.0, median: float = 5.0) -> Event:
    return Event("healed", step, 0, {"action": "clip", "step": step, "max_norm": 2 * median, "grad_norm": norm,
                                     "median": median, "before": f"gradient norm {norm}", "after": "clipped"})


def test_clipped_steps_in_a_row_are_one_finding_with_the_max_norm_to_clip_at():
    tl = make_timeline([1.0] * 12)
    tl.events += [clip(5, 400.0), clip(6, 900.0), clip(7, 300.0)]
    (f,) = findings("healed", tl)
    assert f.severity is Severity.INFO and f.evidence["steps"] == [5, 6, 7] and f.evidence["peak_grad_norm"] == 900.0
    assert "max_norm 10" in f.title and "steps 5-7 (3 steps)" in f.title and "180x" in f.title
    assert f.fixes[0].action == "clip_gradients" and f.fixes[0].params == {"max_norm": 10.0}


def nan_finding(tl: Timeline):  # noqa: ARG001
    from torchdoctor.findings import Finding

    return Finding("nonfinite_loss", Severity.CRITICAL, "Loss became nan at step 5", step=5)


def test_a_finding_heal_answered_in_a_run_that_went_on_finite_is_lowered_to_info_and_kept_in_view():
    from torchdoctor.report import default_view
    from torchdoctor.rules.healed import settle

    losses = [1.0] * 5 + [float("nan")] + [0.9] * 6
    tl = make_timeline([1.0] * 12, losses)
    tl.events.append(skip(5))
    (f,) = settle([nan_finding(tl)], tl)
    assert f.severity is Severity.INFO and f.evidence["healed_in_flight"] is True
    assert f.evidence["severity_without_heal"] == "critical" and "healed in flight" in f.title
    shown, hidden = default_view([f], lambda x: x.severity, lambda x: x.code, lambda x: x.caused_by)
    assert shown == [f] and hidden == []
    saved = default_view([f.to_dict()], lambda x: Severity.parse(x["severity"]), lambda x: x["code"],
                         lambda x: x["caused_by"])
    assert len(saved[0]) == 1


def test_a_run_heal_did_not_save_keeps_its_findings_as_they_were():
    from torchdoctor.rules.healed import settle

    tl = make_timeline([1.0] * 12, [1.0] * 5 + [float("nan")] * 7)  # skipped, and still NaN to the end
    tl.events.append(skip(5))
    (f,) = settle([nan_finding(tl)], tl)
    assert f.severity is Severity.CRITICAL and "healed_in_flight" not in f.evidence
    # a finding no intervention answers is never lowered
    tl = make_timeline([1.0] * 12, [1.0] * 5 + [float("nan")] + [0.9] * 6)
    tl.events.append(clip(5))
    (f,) = settle([nan_finding(tl)], tl)
    assert f.severity is Severity.CRITICAL
