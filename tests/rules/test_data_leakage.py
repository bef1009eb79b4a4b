"""data_leakage on hand-made fingerprint counts: validation rows found among the training rows,
beside separate splits, too few matches, and data whose own batches repeat samples."""

from __future__ import annotations

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import EvalPass, Timeline


def leak_run(val_rows: int, val_seen: int, train_distinct: int = 466, train_rows: int = 500,
             duplicates: int = 0, train_size: int | None = 2000, validated: bool = True) -> Timeline:
    tl = make_timeline([1.0] * 160)
    if validated:  # an evaluation that computed a loss: a validation number the leak inflates
        tl.evaluations.append(EvalPass(step=80, epoch=0, loss=0.5, samples=val_rows, loader="loader 2"))
    tl.habits.leakage = {"train_rows": train_rows, "train_distinct": train_distinct,
                         "train_duplicates": duplicates, "train_batch_rows": 50, "val_rows": val_rows,
                         "val_seen": val_seen, "train_covered": 0.2,
                         "first_step": 40 if val_seen else None}
    if train_size is not None:
        tl.habits.train_loader = "loader 1"
        tl.habits.loaders = {"loader 1": {"dataset": "Subset", "dataset_size": train_size}}
    return tl


def test_validation_rows_among_the_training_rows_are_found_with_the_estimated_share():
    (finding,) = findings("data_leakage", leak_run(2000, 400))
    assert finding.severity is Severity.ERROR and finding.step == 40
    ev = finding.evidence
    assert ev["seen_share"] == 0.2 and ev["val_samples_seen"] == 400 and ev["val_samples_checked"] == 2000
    assert ev["train_set_size"] == 2000 and ev["train_samples_fingerprinted"] == 466
    assert abs(ev["estimated_share"] - 0.2 / (466 / 2000)) < 1e-12
    assert "400 of 2000 validation samples checked (20%)" in finding.title and "about 86%" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "split_data" and "random_split" in fix.snippet


def test_the_estimate_is_capped_and_absent_without_a_known_training_set():
    (full,) = findings("data_leakage", leak_run(500, 500, train_distinct=400, train_size=1000))
    assert full.evidence["estimated_share"] == 1.0
    (unknown,) = findings("data_leakage", leak_run(500, 100, train_size=None))
    assert unknown.evidence["estimated_share"] is None and unknown.evidence["seen_share"] == 0.2


def test_separate_splits_are_clean():
    assert findings("data_leakage", leak_run(2000, 0)) == []


def test_a_few_coincidences_are_clean():
    assert findings("data_leakage", leak_run(2000, 5)) == []  # under min_seen
    assert findings("data_leakage", leak_run(20000, 30)) == []  # 0.15%: under min_share


def test_data_whose_batches_repeat_samples_is_not_judged():
    assert findings("data_leakage", leak_run(2000, 1500, duplicates=40, train_rows=500)) == []


def test_one_batch_trained_on_over_and_over_and_validated_on_is_not_judged():
    # the overfit-one-batch check: 8 sampled steps of the same 16 rows, evaluated on those rows
    tl = leak_run(48, 48, train_distinct=16, train_rows=128, train_size=None)
    tl.habits.leakage["train_batch_rows"] = 16
    assert findings("data_leakage", tl) == []


def test_an_evaluation_over_every_training_sample_is_a_training_accuracy_pass():
    tl = leak_run(640, 640, train_distinct=64, train_rows=2000, train_size=None)
    tl.habits.leakage["train_covered"] = 1.0
    assert findings("data_leakage", tl) == []


def test_nothing_compared_is_clean():
    tl = make_timeline([1.0] * 10)
    assert findings("data_leakage", tl) == []


def test_explain_text_says_what_is_not_flagged():
    from torchdoctor.rules import REGISTRY

    text = REGISTRY["data_leakage"].explanation
    assert "fingerprint" in text and "Not flagged" in text and "training loader" in text


def test_predictions_on_training_rows_without_a_validation_loss_are_a_sanity_check():
    # net(x[:400]).argmax(1) printed after training: no evaluation loss, no validation number to mislead
    assert findings("data_leakage", leak_run(400, 400, validated=False)) == []
