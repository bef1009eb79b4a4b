"""class_imbalance on hand-made timelines: per-class counts as the sampler leaves them."""

from __future__ import annotations

from torchdoctor.rules import class_imbalance as module
from torchdoctor.timeline import LossPrior, Timeline

RULE = module.class_imbalance


def timeline(samples: list[tuple[list[int], list[int], list[int]]], dense: bool = False,
             ignore_index: int | None = None) -> Timeline:
    tl = Timeline()
    tl.train_loss_fn = "cross_entropy"
    tl.prior = LossPrior("cross_entropy", len(samples[0][0]), chance=1.0, dense=dense, ignore_index=ignore_index)
    tl.habits.classes = [{"step": 10 * i, "labels": lab, "predicted": pred, "correct": cor}
                         for i, (lab, pred, cor) in enumerate(samples)]
    return tl


def run(tl: Timeline, **overrides: float):
    params = RULE.defaults()
    params.update(overrides)
    return RULE.run(tl, params)


def majority_only(n: int = 12) -> list[tuple[list[int], list[int], list[int]]]:
    """20:1 labels; early the model guesses both, late it predicts class 0 only."""
    early = ([61, 3], [40, 24], [38, 2])
    late = ([61, 3], [64, 0], [61, 0])
    return [early if i < n // 2 else late for i in range(n)]


def test_fires_when_the_model_predicts_only_the_majority():
    found = run(timeline(majority_only()))
    assert len(found) == 1
    f = found[0]
    assert f.code == "class_imbalance" and f.severity.label == "warning"
    ev = f.evidence
    assert ev["class_counts"] == [732, 36]
    assert ev["ratio"] > 20 and ev["majority_class"] == 0 and ev["minority_class"] == 1
    assert ev["majority_prediction_share"] == 1.0
    assert ev["recall_late"] == [1.0, 0.0] and ev["dense"] is False
    weights = next(x for x in f.fixes if x.action == "class_weights")
    assert weights.params["weight"] == [0.525, 10.7]  # 768 / (2 * 732), 768 / (2 * 36)
    assert "nn.CrossEntropyLoss(weight=torch.tensor([0.525, 10.7]))" in weights.snippet
    sampler = next(x for x in f.fixes if x.action == "weighted_sampler")
    assert "WeightedRandomSampler" in sampler.snippet and sampler.params["class_sample_weight"] == [0.525, 10.7]


def test_names_a_class_that_never_appears():
    samples = [([60, 2, 0], [64, 0, 0], [60, 0, 0])] * 9
    f = run(timeline(samples))[0]
    assert f.evidence["absent_classes"] == [2] and f.evidence["ratio"] == 30
    assert f.fixes[0].params["weight"][2] == f.fixes[0].params["weight"][1]  # the rarest seen class's weight


def test_segmentation_gets_weights_with_ignore_index_and_a_dice_loss():
    samples = [([9000, 300, 200], [9400, 60, 40], [8990, 40, 20])] * 9
    f = run(timeline(samples, dense=True, ignore_index=255))[0]
    assert f.evidence["dense"] is True and "pixels" in f.title
    actions = [x.action for x in f.fixes]
    assert actions == ["class_weights", "dice_loss"]
    assert "F.cross_entropy(logits, mask, weight=weight, ignore_index=255)" in f.fixes[0].snippet
    assert "mask != 255" in f.fixes[1].snippet


def test_balanced_labels_do_not_fire():
    samples = [([32, 32], [64, 0], [32, 0])] * 12  # predicts one class, but the labels are balanced
    assert run(timeline(samples)) == []


def test_imbalanced_labels_learned_with_class_weights_do_not_fire():
    # 80/15/5 like tests/calibration/healthy/class_weights.py: the rare classes are predicted and right.
    samples = [([51, 10, 3], [48, 12, 4], [47, 9, 3])] * 12
    assert run(timeline(samples)) == []


def test_majority_predicted_but_minorities_recalled_do_not_fire():
    # 95% background predicted, as it should be: the objects' recall is high.
    samples = [([9500, 300, 200], [9510, 290, 200], [9450, 250, 180])] * 9
    assert run(timeline(samples, dense=True)) == []


def test_too_few_samples_do_not_fire():
    assert run(timeline(majority_only(4))) == []
    assert run(timeline(majority_only(4)), min_samples=3) != []


def test_no_class_samples_is_silent():
    tl = Timeline()
    assert run(tl) == []


def test_explanation_and_declaration():
    assert RULE.code == "class_imbalance" and "WeightedRandomSampler" in RULE.explanation
    assert RULE.defaults()["ratio"] == 10.0
