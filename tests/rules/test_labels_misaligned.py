"""labels_misaligned on hand-made timelines: a model that memorizes its training labels while every
validation pass stays at chance, beside the overfitting, short-run, poorly-generalizing,
imbalanced and regression twins, none of which it must flag."""

from __future__ import annotations

import math

from tests.rules.timelines import decay, findings, make_dynamics_timeline
from torchdoctor.config import Config
from torchdoctor.findings import Severity
from torchdoctor.rules import evaluate
from torchdoctor.timeline import LossPrior, Timeline

LN10 = math.log(10)
EPOCHS, SPE = 12, 8  # 12 epochs of 8 steps: a 256-sample training set in batches of 32


def classification_run(train: list[float], val_losses: list[float | None] | None,
                       val_acc: list[float | None] | None, train_acc: float | None = None,
                       classes: int = 10) -> Timeline:
    """A cross-entropy run over `classes` classes, one validation pass per epoch, the training
    accuracy `train_acc` on the probe's sampled steps of the second half of the run."""
    tl = make_dynamics_timeline(train, steps_per_epoch=SPE, val_losses=val_losses, val_acc=val_acc)
    tl.prior = LossPrior("cross_entropy", classes=classes, chance=math.log(classes))
    if train_acc is not None:
        for rec in tl.steps:
            if rec.step % 10 == 0:
                rec.accuracy = train_acc if rec.step >= len(train) // 2 else 1.0 / classes
    return tl


def memorizing() -> list[float]:
    return decay(EPOCHS * SPE, LN10, 0.02, tau=20)


def test_memorized_training_labels_with_validation_at_chance_are_found():
    val = [2.36 + 0.3 * k for k in range(EPOCHS)]  # confidently wrong: climbs above ln 10
    acc = [0.115, 0.119, 0.111, 0.09, 0.074, 0.057, 0.07, 0.07, 0.059, 0.072, 0.078, 0.059]
    tl = classification_run(memorizing(), val, acc, train_acc=0.9)
    (finding,) = findings("labels_misaligned", tl)
    assert finding.severity is Severity.ERROR
    ev = finding.evidence
    assert ev["chance_loss"] == LN10 and ev["chance_share"] == 0.1 and ev["chance_from"] == "uniform"
    assert ev["passes"] == EPOCHS and ev["val_accuracy_max"] == 0.119 and ev["val_loss_min"] == 2.36
    assert ev["train_loss_final"] < 0.5 * LN10 and ev["train_accuracy_final"] == 0.9
    assert finding.step == ev["memorized_from_step"] and finding.step < EPOCHS * SPE
    assert "validation passes stayed at chance" in finding.title and "12%" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "align_labels" and "self.y[i]" in fix.snippet and "x[order], y[order]" in fix.snippet


def test_it_is_the_cause_of_the_overfitting_it_makes():
    val = [2.36 + 0.3 * k for k in range(EPOCHS)]
    tl = classification_run(memorizing(), val, [0.1] * EPOCHS, train_acc=0.9)
    out = evaluate(tl, Config()).findings
    assert [(f.code, f.caused_by) for f in out] == [("labels_misaligned", None), ("overfitting", "labels_misaligned")]


def test_plain_overfitting_that_first_generalized_is_not_flagged():
    """The overfitting twin: validation improved well above chance, then worsened."""
    val = [1.6, 1.1, 0.9, 0.85, 0.9, 1.0, 1.15, 1.3, 1.45, 1.6, 1.75, 1.9]
    acc = [0.45, 0.62, 0.7, 0.72, 0.71, 0.69, 0.67, 0.66, 0.65, 0.64, 0.63, 0.62]
    tl = classification_run(memorizing(), val, acc, train_acc=0.98)
    assert findings("labels_misaligned", tl) == []
    assert [f.code for f in findings("overfitting", tl)] == ["overfitting"]


def test_a_run_too_short_to_learn_is_not_flagged():
    """The short-run twin: validation at chance because training is at chance too."""
    train = decay(EPOCHS * SPE, LN10, 2.2, tau=30)
    tl = classification_run(train, [2.31] * EPOCHS, [0.1] * EPOCHS, train_acc=0.12)
    assert findings("labels_misaligned", tl) == []


def test_a_tiny_dataset_that_generalizes_poorly_but_above_chance_is_not_flagged():
    val = [2.25, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3]
    acc = [0.16, 0.2, 0.21, 0.2, 0.2, 0.19, 0.2, 0.2, 0.19, 0.2, 0.19, 0.2]  # 512 samples: 3 sd is 4 points
    tl = classification_run(memorizing(), val, acc, train_acc=0.95)
    assert findings("labels_misaligned", tl) == []


def test_the_validation_loss_alone_decides_when_no_accuracy_was_measured():
    at_chance = classification_run(memorizing(), [2.3 + 0.2 * k for k in range(EPOCHS)], None)
    assert [f.code for f in findings("labels_misaligned", at_chance)] == ["labels_misaligned"]
    learned = classification_run(memorizing(), [1.5 + 0.1 * k for k in range(EPOCHS)], None)
    assert findings("labels_misaligned", learned) == []


def test_an_imbalanced_set_whose_model_predicts_the_majority_is_not_flagged():
    """90% of one class: predicting it gives 90% training accuracy, nothing memorized."""
    share = 0.9
    entropy = -(share * math.log(share) + 9 * (0.1 / 9) * math.log(0.1 / 9))
    train = decay(EPOCHS * SPE, LN10, entropy, tau=10)
    tl = classification_run(train, [entropy * 1.05] * EPOCHS, [share] * EPOCHS, train_acc=share)
    tl.habits.classes = [{"step": s, "labels": [900] + [100 // 9] * 9, "predicted": [1000] + [0] * 9,
                          "correct": [900] + [0] * 9} for s in range(0, 96, 10)]
    assert findings("labels_misaligned", tl) == []


def test_regression_losses_and_too_few_passes_are_not_judged():
    regression = classification_run(memorizing(), [2.4] * EPOCHS, None)
    regression.prior = LossPrior("mse_loss")
    regression.train_loss_fn = "mse_loss"
    assert findings("labels_misaligned", regression) == []
    one_pass = make_dynamics_timeline(memorizing(), steps_per_epoch=SPE, val_losses=[2.5], val_acc=[0.1],
                                      val_epochs=[EPOCHS - 1])
    one_pass.prior = LossPrior("cross_entropy", classes=10, chance=LN10)
    assert findings("labels_misaligned", one_pass) == []
    no_validation = classification_run(memorizing(), None, None, train_acc=0.9)
    assert findings("labels_misaligned", no_validation) == []


def logged(acc: float) -> Timeline:
    """`doctor.log(val_acc=...)` after each epoch, in percent: no loss, no sample count."""
    tl = classification_run(memorizing(), None, [acc] * EPOCHS, train_acc=0.9)
    for e in tl.evaluations:
        e.source, e.loader, e.samples, e.loss_fn = "log", None, 0, None
    return tl


def test_a_logged_accuracy_in_percent_is_read_as_a_fraction():
    assert findings("labels_misaligned", logged(60.0)) == []
    (finding,) = findings("labels_misaligned", logged(10.5))
    assert finding.evidence["val_accuracy_max"] == 0.105
