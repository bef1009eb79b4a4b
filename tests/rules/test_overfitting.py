import pytest

from tests.rules.timelines import EvalPass, decay, findings, make_dynamics_timeline, noisy_curve
from torchdoctor.findings import Severity
from torchdoctor.rules import NotEvaluated

EPOCHS, SPE = 30, 8
CNN = {
    "features.0": "Conv2d", "features.1": "ReLU", "features.2": "MaxPool2d",
    "features.3": "Conv2d", "features.4": "ReLU", "features.5": "MaxPool2d",
    "classifier.0": "Flatten", "classifier.1": "Linear", "classifier.2": "ReLU", "classifier.3": "Linear",
}


def per_step(epoch_losses, noise=0.15, seed=0):
    """Training losses, SPE noisy steps per epoch around each epoch's level."""
    return noisy_curve([v for v in epoch_losses for _ in range(SPE)], noise, seed)


def run(train_epochs, val, seed=0, val_noise=0.02, **kw):
    return make_dynamics_timeline(per_step(train_epochs, seed=seed), SPE,
                                  val_losses=noisy_curve(val, val_noise, seed + 100) if val else val, **kw)


def overfit_val(rise=0.3, best=5, epochs=EPOCHS):
    """Validation falls to 0.6 at epoch `best`, then climbs `rise` over the remaining epochs."""
    return [max(0.6, 1.4 - 0.16 * e) if e <= best else 0.6 * (1 + rise * (e - best) / (epochs - best - 1))
            for e in range(epochs)]


def test_validation_rising_after_epoch_five_is_found_at_its_best_epoch():
    # The shape of examples/overfitting.py: val best around epoch 5, then +30% over 25 epochs.
    tl = run(decay(EPOCHS, 1.4, 0.02, 6), overfit_val(), val_noise=0.005, optimizer="Adam",
             hparams={"lr": 1e-3, "weight_decay": 0.0}, module_types=CNN, input_shape=[16, 1, 16, 16],
             num_params=140_000)
    (finding,) = findings("overfitting", tl)
    assert finding.severity == Severity.WARNING
    assert finding.epoch == 5 and finding.step == 6 * SPE  # the pass after epoch 5's steps
    ev = finding.evidence
    assert ev["criterion"] == "val_loss_rise" and ev["best_epoch"] == 5 and ev["rise_from_epoch"] == 6
    assert ev["best_val_loss"] == pytest.approx(0.6, rel=0.02)
    assert ev["final_val_loss"] == pytest.approx(0.78, rel=0.03)
    assert 0.25 <= ev["val_rise"] <= 0.35
    assert ev["gap_final"]["ratio"] > 10 and ev["gap_at_best"]["ratio"] < 1.5
    assert ev["val_curve"][0][0] == 0 and len(ev["train_curve"]) == EPOCHS
    actions = [f.action for f in finding.fixes]
    assert actions == ["early_stopping", "add_weight_decay", "augment_data", "add_dropout", "reduce_model_size"]
    stop, decay_fix, augment, dropout, smaller = finding.fixes
    assert stop.params == {"epoch": 5, "step": 48, "patience": 3, "val_loss": ev["best_val_loss"]}
    assert "epoch 5" in stop.text and "bad >= 3" in stop.snippet
    assert decay_fix.params["optimizer"] == "AdamW" and decay_fix.params["weight_decay"] == 0.01
    assert decay_fix.snippet == "optimizer = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.01)"
    assert "T.RandomCrop(16, padding=2)" in augment.snippet and "ColorJitter" not in augment.snippet
    assert dropout.params["before"] == ["classifier.1", "classifier.3"]
    assert smaller.params == {"num_params": 140_000, "suggested_params": 35_000}


@pytest.mark.parametrize("seed", range(8))
def test_the_rise_is_found_through_realistic_validation_noise(seed):
    (finding,) = findings("overfitting", run(decay(EPOCHS, 1.4, 0.02, 6), overfit_val(), seed, val_noise=0.03))
    assert 4 <= finding.epoch <= 13  # the val curve is nearly flat right after its low


def test_weight_decay_is_derived_from_the_optimizer_in_use():
    base = (decay(EPOCHS, 1.4, 0.02, 6), overfit_val())
    (f,) = findings("overfitting", run(*base, optimizer="SGD", hparams={"lr": 0.1, "momentum": 0.9}))
    wd = next(x for x in f.fixes if x.action == "add_weight_decay")
    assert wd.params["weight_decay"] == 5e-4 and "momentum=0.9" in wd.snippet
    (f,) = findings("overfitting", run(*base, optimizer="SGD", hparams={"weight_decay": 5e-4}))
    wd = next(x for x in f.fixes if x.action == "add_weight_decay")
    assert wd.params["weight_decay"] == pytest.approx(5e-3) and "from 0.0005" in wd.text
    (f,) = findings("overfitting", run(*base, optimizer="AdamW", hparams={"weight_decay": 0.01}))
    wd = next(x for x in f.fixes if x.action == "add_weight_decay")
    assert wd.params["weight_decay"] == pytest.approx(0.1)


def test_augmentation_uses_the_observed_image_size_and_skips_non_images():
    base = (decay(EPOCHS, 1.4, 0.02, 6), overfit_val())
    (f,) = findings("overfitting", run(*base, input_shape=[128, 3, 32, 32], module_types=CNN))
    augment = next(x for x in f.fixes if x.action == "augment_data")
    assert "T.RandomCrop(32, padding=4)" in augment.snippet and "ColorJitter" in augment.snippet
    (f,) = findings("overfitting", run(*base, input_shape=[128, 20]))
    assert "augment_data" not in [x.action for x in f.fixes]


def test_a_model_with_dropout_is_told_to_raise_it():
    types = {"fc1": "Linear", "drop": "Dropout", "fc2": "Linear"}
    (f,) = findings("overfitting", run(decay(EPOCHS, 1.4, 0.02, 6), overfit_val(), module_types=types))
    dropout = next(x for x in f.fixes if x.action == "add_dropout")
    assert dropout.params["modules"] == ["drop"] and "raise its p" in dropout.text


def test_falling_validation_accuracy_is_found_from_logged_accuracy_alone():
    acc = [0.5 + 0.04 * e if e <= 6 else 0.74 - 0.01 * (e - 6) for e in range(20)]  # percent, via doctor.log
    tl = make_dynamics_timeline(per_step(decay(20, 1.4, 0.05, 5)), SPE)
    tl.evaluations = [EvalPass(step=(e + 1) * SPE, epoch=e, loss=None, accuracy=100 * a, loader="logged",
                               source="log") for e, a in enumerate(acc)]
    (finding,) = findings("overfitting", tl)
    assert finding.evidence["criterion"] == "val_accuracy_drop" and finding.epoch == 6
    assert finding.evidence["val_accuracy_best"] == pytest.approx(0.74)
    assert finding.fixes[0].params["val_accuracy"] == pytest.approx(0.74)
    assert "-evaluate(model, val_loader)" in finding.fixes[0].snippet


def test_a_large_and_growing_gap_is_found_when_validation_stalls():
    val = [max(0.62, 1.2 - 0.08 * e) + 0.001 * max(0, e - 8) for e in range(EPOCHS)]  # best at 8, +4% after
    (finding,) = findings("overfitting", run(decay(EPOCHS, 1.2, 0.05, 5), val, val_noise=0.0))
    assert finding.evidence["criterion"] == "gap" and finding.epoch == 8
    assert finding.evidence["gap_final"]["ratio"] > 2
    assert "has not improved since epoch 8" in finding.title


def test_the_gap_is_not_judged_across_different_loss_functions():
    val = [max(0.62, 1.2 - 0.08 * e) + 0.001 * max(0, e - 8) for e in range(EPOCHS)]
    tl = run(decay(EPOCHS, 1.2, 0.05, 5), val, val_noise=0.0)
    for e in tl.evaluations:
        e.loss_fn = "mse_loss"
    assert findings("overfitting", tl) == []


def test_validation_every_few_hundred_steps_is_placed_by_step():
    tl = run(decay(EPOCHS, 1.4, 0.02, 6), overfit_val(), val_noise=0.005)
    for e in tl.evaluations:
        e.epoch = None
    for r in tl.steps:
        r.epoch = None
    (finding,) = findings("overfitting", tl)
    assert finding.epoch is None and finding.step == 48 and finding.evidence["x_axis"] == "step"
    assert "step 48" in finding.fixes[0].text


def test_no_validation_is_not_evaluated_and_says_how_to_get_it():
    with pytest.raises(NotEvaluated) as why:
        findings("overfitting", run(decay(EPOCHS, 1.4, 0.02, 6), None))
    assert "torch.no_grad()" in str(why.value) and "doctor.log(val_loss=" in str(why.value)


def test_a_two_epoch_run_is_not_evaluated():
    with pytest.raises(NotEvaluated, match="2 validation passes"):
        findings("overfitting", run([1.0, 0.5], [0.9, 1.2]))


# -- controls: runs that must stay clean ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_training_loss_above_validation_all_run_stays_clean(seed):
    # Heavy dropout: the training loss (dropout on) sits above the validation loss (dropout off).
    assert findings("overfitting", run(decay(EPOCHS, 1.6, 0.6, 6), decay(EPOCHS, 1.3, 0.4, 6), seed, 0.05)) == []


@pytest.mark.parametrize("seed", range(6))
def test_noisy_improving_or_flat_validation_stays_clean(seed):
    assert findings("overfitting", run(decay(EPOCHS, 1.4, 0.3, 6), decay(EPOCHS, 1.3, 0.4, 6), seed, 0.05)) == []
    assert findings("overfitting", run(decay(EPOCHS, 1.0, 0.9, 6), [1.0] * EPOCHS, seed, 0.05)) == []


@pytest.mark.parametrize("seed", range(6))
def test_a_step_schedule_stays_clean(seed):
    level = [1.0 if e < 10 else 0.6 if e < 20 else 0.45 for e in range(EPOCHS)]
    assert findings("overfitting", run([0.8 * v for v in level], level, seed, 0.05)) == []


@pytest.mark.parametrize("seed", range(6))
def test_validation_every_three_epochs_improving_stays_clean(seed):
    tl = make_dynamics_timeline(per_step(decay(12, 1.4, 0.5, 4), seed=seed), SPE,
                                val_losses=noisy_curve([1.2, 0.9, 0.75, 0.7], 0.03, seed), val_epochs=[2, 5, 8, 11])
    assert findings("overfitting", tl) == []


def test_a_run_that_recovers_after_a_bump_stays_clean():
    val = [max(0.6, 1.4 - 0.16 * e) for e in range(10)] + [0.75, 0.8, 0.8, 0.7, 0.6, 0.55, 0.52, 0.5, 0.5, 0.49]
    assert findings("overfitting", run(decay(20, 1.4, 0.1, 6), val)) == []


def test_a_run_whose_training_loss_rose_too_is_not_overfitting():
    # Both curves climb: the learning rate is at fault (divergence), not memorization.
    train = [max(0.5, 1.4 - 0.15 * e) * (1 + 0.05 * max(0, e - 6)) for e in range(EPOCHS)]
    assert findings("overfitting", run(train, overfit_val())) == []


def test_segmentation_is_judged_by_its_mean_iou_not_its_background_dominated_pixel_accuracy():
    """Pixel accuracy of a 95%-background mask hardly moves (0.96 → 0.955) while the mean IoU falls
    from 0.74 to 0.6: the IoU is the validation metric that overfitting reads."""
    iou = [0.5 + 0.04 * e if e <= 6 else 0.74 - 0.015 * (e - 6) for e in range(20)]
    tl = make_dynamics_timeline(per_step(decay(20, 1.4, 0.05, 5)), SPE)
    val = [0.3 - 0.01 * e if e <= 6 else 0.24 + 0.001 * (e - 6) for e in range(20)]  # barely moving
    tl.evaluations = [EvalPass(step=(e + 1) * SPE, epoch=e, loss=val[e], accuracy=0.96 - 0.0005 * e, iou=v,
                               loader="loader 2") for e, v in enumerate(iou)]
    (finding,) = findings("overfitting", tl)
    assert finding.evidence["criterion"] == "val_accuracy_drop" and finding.epoch == 6
    assert finding.evidence["val_metric"] == "mean IoU"
    assert "validation mean IoU fell from" in finding.title  # smoothed: median of three
