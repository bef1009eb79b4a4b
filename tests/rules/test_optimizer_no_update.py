"""optimizer_no_update on hand-made habits: an optimizer whose steps changed nothing (gradients reset
before the step, all None, lr 0), beside a warmup's single step at lr 0 and a handful of bad steps."""

from __future__ import annotations

import pytest

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.rules.optimizer_no_update import NO_GRAD, ZERO_LR, ZEROED
from torchdoctor.timeline import Timeline


def stepped(no_update: int, steps: int = 40, why: str = ZEROED, optimizer: str = "SGD") -> Timeline:
    tl = make_timeline([1.0] * steps)
    tl.habits.no_update = [{"optimizer": optimizer, "index": 0, "steps": steps, "no_update": no_update,
                            "first_step": 0 if no_update else None, "why": {why: no_update} if no_update else {}}]
    return tl


@pytest.mark.parametrize(("why", "action"), [(ZEROED, "move_zero_grad"), (NO_GRAD, "connect_loss"),
                                             (ZERO_LR, "set_learning_rate")])
def test_steps_that_change_nothing_are_found_with_their_reason(why, action):
    (finding,) = findings("optimizer_no_update", stepped(40, why=why))
    assert finding.severity is Severity.ERROR
    assert finding.step == 0
    assert finding.evidence["why"] == why and finding.evidence["optimizer"] == "SGD"
    assert finding.evidence["no_update_steps"] == 40 and finding.evidence["steps"] == 40
    assert finding.fixes[0].action == action


def test_the_zero_lr_fix_names_a_usual_learning_rate():
    (finding,) = findings("optimizer_no_update", stepped(40, why=ZERO_LR, optimizer="Adam"))
    assert finding.fixes[0].params == {"lr": 1e-3} and "lr=0.001" in finding.fixes[0].snippet


def test_a_warmup_at_lr_0_for_its_first_step_is_clean():
    assert findings("optimizer_no_update", stepped(1, why=ZERO_LR)) == []


def test_a_minority_of_steps_that_change_nothing_is_clean():
    # a cosine schedule with eta_min=0 touches lr 0 at the end of each cycle
    assert findings("optimizer_no_update", stepped(10, steps=120, why=ZERO_LR)) == []


def test_an_optimizer_that_updates_is_clean():
    assert findings("optimizer_no_update", stepped(0)) == []
