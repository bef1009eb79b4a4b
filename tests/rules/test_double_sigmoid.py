"""double_sigmoid on hand-made loss-input samples: probabilities (a final Sigmoid, or torch.sigmoid
in the forward) fed to BCEWithLogitsLoss, beside raw logits that start inside [0, 1] and a model
ending in Sigmoid whose loss is BCELoss."""

from __future__ import annotations

import math

from tests.rules.timelines import findings, make_model_timeline, sampled, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

HEAD = ("Linear", "ReLU", "Linear")
WITH_SIGMOID = sequential_types(*HEAD, "Sigmoid")
LOGITS = sequential_types(*HEAD)
LOSS = "binary_cross_entropy_with_logits"


def bce_run(module_types: dict[str, str], ranges: list[tuple[float, float]], loss: str = LOSS) -> Timeline:
    """What the loss was given on the sampled steps (first 3, then every 10th): (min, max) each."""
    steps = [s for s in range(1000) if sampled(s)][: len(ranges)]
    tl = make_model_timeline(module_types, steps=steps[-1] + 1)
    tl.train_loss_fn = loss
    tl.habits.loss_inputs = [{"step": s, "loss": loss, "min": lo, "max": hi, "mean": (lo + hi) / 2}
                             for s, (lo, hi) in zip(steps, ranges, strict=True)]
    return tl


def test_a_final_sigmoid_into_bce_with_logits_is_found_at_the_module():
    tl = bce_run(WITH_SIGMOID, [(0.31, 0.62), (0.2, 0.71), (0.08, 0.83), (0.02, 0.91), (0.01, 0.95)])
    (finding,) = findings("double_sigmoid", tl)
    assert finding.severity is Severity.ERROR
    assert finding.where == "3" and finding.step == 0
    ev = finding.evidence
    assert ev["loss"] == LOSS and ev["module"] == "3"
    assert (ev["samples"], ev["probability_samples"], ev["min"], ev["max"]) == (5, 5, 0.01, 0.95)
    assert ev["least_loss"] == {"label_0": round(math.log(2), 4), "label_1": round(math.log1p(math.exp(-0.95)), 4)}
    assert "the model ends in 3 (Sigmoid)" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "fix_loss_input" and fix.params == {"module": "3", "loss": LOSS}
    assert "BCEWithLogitsLoss" in fix.snippet


def test_torch_sigmoid_in_the_forward_is_found_when_every_sample_is_a_probability():
    tl = bce_run(LOGITS, [(0.3, 0.7)] * 6)
    (finding,) = findings("double_sigmoid", tl)
    assert finding.where is None and finding.evidence["module"] is None
    assert finding.fixes[0].params == {"module": None, "loss": LOSS}


def test_raw_logits_that_start_inside_zero_one_are_clean():
    # a logit model whose logits happen to lie in [0, 1] on the first steps, then leave it
    ranges = [(0.01, 0.4), (0.02, 0.6), (0.0, 0.9), (-0.8, 1.7), (-2.5, 3.1), (-4.0, 4.4)]
    assert findings("double_sigmoid", bce_run(LOGITS, ranges)) == []


def test_without_a_sigmoid_module_a_short_run_is_not_enough():
    assert findings("double_sigmoid", bce_run(LOGITS, [(0.3, 0.7)] * 4)) == []


def test_with_a_sigmoid_module_three_sampled_steps_are_enough_but_two_are_not():
    assert findings("double_sigmoid", bce_run(WITH_SIGMOID, [(0.3, 0.7)] * 2)) == []
    assert len(findings("double_sigmoid", bce_run(WITH_SIGMOID, [(0.3, 0.7)] * 3))) == 1


def test_a_minority_of_probability_samples_is_clean_even_with_a_sigmoid_module():
    # e.g. the Sigmoid is a gate inside the model and the loss is given something else
    ranges = [(0.1, 0.9), (-1.0, 2.0), (-1.5, 2.5), (-2.0, 3.0), (0.2, 0.8)]
    assert findings("double_sigmoid", bce_run(WITH_SIGMOID, ranges)) == []


def test_probabilities_into_bce_loss_are_clean():
    tl = bce_run(WITH_SIGMOID, [(0.01, 0.99)] * 6, loss="binary_cross_entropy")
    assert findings("double_sigmoid", tl) == []


def test_multilabel_logits_into_bce_with_logits_are_clean():
    assert findings("double_sigmoid", bce_run(LOGITS, [(-3.2, 2.9)] * 8)) == []


def test_explain_text_names_the_loss_and_the_healthy_cases():
    from torchdoctor.rules import REGISTRY

    text = REGISTRY["double_sigmoid"].explanation
    assert "BCEWithLogitsLoss" in text and "Not flagged" in text and "BCELoss" in text
