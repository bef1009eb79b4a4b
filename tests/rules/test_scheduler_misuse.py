"""scheduler_misuse on hand-made habits: a per-epoch schedule stepped per batch, a scheduler stepped
before its optimizer, one bound to an optimizer that never steps, beside their healthy twins."""

from __future__ import annotations

from typing import Any

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline


def scheduled(scheduler: str, settings: dict[str, Any], steps: int, optimizer_steps: int = 120, epochs: int = 6,
              before: int = 0, lr=lambda s: 0.1 * 0.1 ** (s // 2)) -> Timeline:
    tl = make_timeline([1.0] * optimizer_steps)
    for record in tl.steps:
        record.lr = lr(record.step)
    tl.run.epochs = epochs
    tl.habits.schedulers = [{"scheduler": scheduler, "optimizer": "SGD", "steps": steps,
                             "optimizer_steps": optimizer_steps, "before_optimizer": before, "first_step": 1,
                             "settings": settings}]
    return tl


def test_steplr_stepped_per_batch_is_found_with_the_curve_and_the_step_size_in_batches():
    (finding,) = findings("scheduler_misuse", scheduled("StepLR", {"step_size": 2, "gamma": 0.1}, steps=120))
    assert finding.severity is Severity.WARNING
    ev = finding.evidence
    assert ev["why"] == "per-epoch scheduler stepped per batch" and ev["batches_per_epoch"] == 20
    assert ev["lr_curve"][0] == (0, 0.1) and len(ev["lr_curve"]) == 8 and ev["lr_curve"][-1][1] < 1e-50
    fix = finding.fixes[0]
    assert fix.action == "step_per_epoch" and fix.params == {"step_size": 40, "batches_per_epoch": 20, "current": 2}
    assert "once per epoch" in fix.text and "step_size=40" in fix.text


def test_cosine_with_t_max_in_epochs_stepped_per_batch_is_found():
    (finding,) = findings("scheduler_misuse", scheduled("CosineAnnealingLR", {"T_max": 6}, steps=120))
    assert finding.fixes[0].params["T_max"] == 120


def test_exponential_stepped_per_batch_is_found_by_its_decay():
    (finding,) = findings("scheduler_misuse", scheduled("ExponentialLR", {"gamma": 0.9}, steps=120))
    assert 0.99 < finding.fixes[0].params["gamma"] < 1


def test_cosine_with_t_max_in_batches_and_steplr_per_epoch_are_clean():
    assert findings("scheduler_misuse", scheduled("CosineAnnealingLR", {"T_max": 120}, steps=120)) == []
    assert findings("scheduler_misuse", scheduled("StepLR", {"step_size": 2, "gamma": 0.1}, steps=6)) == []
    assert findings("scheduler_misuse", scheduled("ExponentialLR", {"gamma": 0.9999}, steps=120)) == []


def test_per_batch_schedulers_by_design_are_clean():
    assert findings("scheduler_misuse", scheduled("OneCycleLR", {"total_steps": 120}, steps=120)) == []
    assert findings("scheduler_misuse", scheduled("LambdaLR", {}, steps=120)) == []


def test_a_scheduler_stepped_before_its_optimizer_is_found():
    (finding,) = findings("scheduler_misuse", scheduled("StepLR", {"step_size": 2, "gamma": 0.1}, steps=6, before=1))
    assert finding.evidence["why"] == "scheduler.step() before optimizer.step()"
    assert finding.fixes[0].action == "step_after_optimizer"


def test_before_an_optimizer_step_gradscaler_skipped_is_clean():
    tl = scheduled("StepLR", {"step_size": 2, "gamma": 0.1}, steps=6, before=1)
    tl.amp.skipped = 1
    assert findings("scheduler_misuse", tl) == []


def test_a_scheduler_whose_optimizer_never_steps_is_found():
    (finding,) = findings("scheduler_misuse", scheduled("StepLR", {"step_size": 2}, steps=6, optimizer_steps=0))
    assert finding.evidence["why"] == "optimizer never steps" and finding.evidence["scheduler_steps"] == 6
