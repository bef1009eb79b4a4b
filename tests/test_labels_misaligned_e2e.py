"""labels_misaligned end to end: a real MLP memorizes 256 training samples whose inputs were shuffled
apart from their labels while a clean validation set stays at chance; its --fixed twin (one
permutation for both) and plain overfitting stay silent."""

from __future__ import annotations

import math

from tests.calibration.manifest import HERE
from tests.conftest import EXAMPLES, run_script

SCRIPT = HERE / "faulty" / "labels_misaligned_memorizes.py"


def test_labels_shuffled_apart_from_their_inputs_are_found():
    run = run_script(SCRIPT)
    finding = run.report.by_code("labels_misaligned")
    assert finding is not None, run.codes
    ev = finding.evidence
    assert ev["classes"] == 10 and abs(ev["chance_loss"] - math.log(10)) < 0.15
    assert ev["train_loss_final"] < 0.5 * ev["chance_loss"]
    assert ev["val_loss_min"] >= 0.95 * ev["chance_loss"] and ev["val_loss_final"] > ev["chance_loss"]
    assert ev["val_accuracy_max"] < 0.2 and ev["passes"] == 12
    overfitting = run.report.by_code("overfitting")
    assert overfitting is None or overfitting.caused_by == "labels_misaligned"


def test_inputs_and_labels_shuffled_together_are_clean():
    run = run_script(SCRIPT, "--fixed")
    assert "labels_misaligned" not in run.codes


def test_plain_overfitting_is_not_labels_misaligned():
    run = run_script(EXAMPLES / "overfitting.py", "--epochs", "12")
    assert "labels_misaligned" not in run.codes
