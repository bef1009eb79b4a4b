"""Training dynamics on real runs: the faulty examples are found with the right epoch and fixes,
and the healthy controls (dropout, schedules, noisy batches, short runs, sparse or no validation,
converged runs) stay clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_script

DYNAMICS = Path(__file__).resolve().parent / "scripts" / "dynamics"
CODES = {"overfitting", "divergence", "loss_plateau"}


def test_overfitting_is_found_at_the_best_epoch_with_numbers_in_the_fixes():
    report = run_script(EXAMPLES / "overfitting.py").report
    assert report.codes() == ["overfitting"]
    finding = report.by_code("overfitting")
    assert finding.epoch == 5 and finding.evidence["best_epoch"] == 5
    assert finding.evidence["final_val_loss"] > 1.3 * finding.evidence["best_val_loss"]
    fixes = {f.action: f for f in finding.fixes}
    assert finding.fixes[0].action == "early_stopping" and fixes["early_stopping"].params["epoch"] == 5
    assert fixes["add_weight_decay"].params["weight_decay"] == 0.01  # Adam without decay -> AdamW 0.01
    assert "RandomCrop(16, padding=2)" in fixes["augment_data"].snippet  # from the 1x16x16 inputs
    assert "classifier" in fixes["add_dropout"].text
    assert len(report.timeline.validation()) == 30


def test_divergence_is_found_and_the_suggested_learning_rate_trains():
    report = run_script(EXAMPLES / "divergence.py").report
    assert report.codes() == ["divergence"]
    finding = report.by_code("divergence")
    lower = next(f for f in finding.fixes if f.action == "lower_learning_rate")
    assert lower.params["current_lr"] == 0.1 and 0 < lower.params["lr"] < 0.1
    fixed = run_script(EXAMPLES / "divergence.py", "--lr", str(lower.params["lr"])).report
    assert fixed.healthy, fixed.codes()


@pytest.mark.parametrize(("bug", "cause", "action"), [
    ("lr", "tiny_updates", "raise_learning_rate"),
    ("stale-model", "not_updated", "check_optimizer_params"),
])
def test_a_plateau_tells_a_tiny_learning_rate_from_a_model_not_updated(bug, cause, action):
    report = run_script(EXAMPLES / "loss_plateau.py", "--bug", bug).report
    finding = report.by_code("loss_plateau")
    assert finding is not None and finding.evidence["cause"] == cause
    assert finding.fixes[0].action == action
    if bug == "lr":
        assert finding.evidence["update_ratio"] < 1e-5
        assert finding.fixes[0].params["lr"] > 100 * 1e-6
    else:
        assert finding.evidence["update_ratio"] == 0.0
    assert not {"overfitting", "divergence"} & set(report.codes())


def test_the_plateau_example_with_a_good_learning_rate_is_clean():
    report = run_script(EXAMPLES / "loss_plateau.py", "--lr", "0.01").report
    assert not CODES & set(report.codes()), report.codes()


CONTROLS = sorted(DYNAMICS.glob("*.py"))


@pytest.mark.parametrize("script", CONTROLS, ids=[p.stem for p in CONTROLS])
def test_healthy_dynamics_controls_stay_clean(script):
    result = run_script(script)
    assert result.status == 0
    assert result.report.healthy, [(f.code, f.title) for f in result.report.findings]
    assert not result.report.internal_errors


def test_no_validation_is_said_not_guessed():
    report = run_script(DYNAMICS / "no_validation.py").report
    assert "no validation was observed" in report.not_evaluated["overfitting"]


def test_two_epochs_are_too_few_for_a_verdict():
    report = run_script(DYNAMICS / "two_epochs.py").report
    assert "overfitting" in report.not_evaluated and len(report.timeline.validation()) == 2


def test_hand_written_validation_is_seen_through_the_training_loss():
    tl = run_script(DYNAMICS / "manual_val_regression.py").report.timeline
    val = tl.validation()
    assert len(val) == 10 and all(e.source == "derived" and e.loss_fn == "mse_loss" for e in val)
    assert val[-1].loss < val[0].loss


def test_sparse_validation_is_attributed_to_its_epochs():
    """Every 3rd of 12 fine-tuning epochs, after 2 pretraining epochs over the same loader: epochs
    count passes over the training loader for the whole run, so the script's epoch 2 is the 5th."""
    tl = run_script(DYNAMICS / "finetune_sparse_val.py").report.timeline
    assert [e.epoch for e in tl.validation()] == [4, 7, 10, 13]
