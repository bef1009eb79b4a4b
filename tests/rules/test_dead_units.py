"""dead_units on hand-made activation samples: a ReLU layer whose units all died, beside the ordinary
sparsity of a healthy ReLU network."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.rules.timelines import activation_steps, findings, make_model_timeline, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

# an MLP on flattened 3x8x8 images: Linear(192, 32), ReLU, Linear(32, 32), ReLU, Linear(32, 4)
MLP = sequential_types("Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear")


def relu_run(dead: dict[str, Callable[[int], int]], units: int = 32, last_step: int = 60,
             lr: float = 0.05, per_unit: int = 64) -> Timeline:
    """The activation probe's ReLU samples on its sampled steps: per module, the units (dim 1 of
    the output) that were never positive over the whole batch, `dead[module](step)` of them."""
    tl = make_model_timeline(MLP, steps=last_step + 1, lr=lr)
    for step in activation_steps(last_step):
        for module, count in dead.items():
            tl.habits.activations.append({"step": step, "module": module, "type": "ReLU", "dead": count(step),
                                          "units": units, "per_unit": per_unit})
    return tl


def test_a_layer_whose_units_all_died_is_found_with_a_lower_learning_rate():
    # the second hidden layer's bias pushed below every input: all 32 units dead from the first sample on
    tl = relu_run({"2": lambda s: 1, "4": lambda s: 32})
    (finding,) = findings("dead_units", tl)
    assert finding.severity is Severity.WARNING
    assert finding.where == "4" and finding.step == 1
    assert finding.evidence["dead"] == finding.evidence["units"] == 32
    assert finding.evidence["layers"] == {"4": 1.0}
    assert finding.evidence["history"] == [[1, 32], [5, 32], [10, 32], [20, 32], [50, 32]]
    assert finding.evidence["lr"] == 0.05
    assert "100% of the units of 4 (ReLU)" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "lower_learning_rate" and fix.params == {"lr": 0.005, "current_lr": 0.05}
    assert [f.action for f in finding.fixes[1:]] == ["change_activation", "change_initialization"]
    assert finding.fixes[1].params == {"activation": "LeakyReLU"}


def test_the_deadest_layer_is_named_and_the_others_counted():
    # a high learning rate kills units in both layers, the first one by step 10
    tl = relu_run({"2": lambda s: 20 if s >= 10 else 3, "4": lambda s: 28 if s >= 5 else 4}, lr=1.0)
    (finding,) = findings("dead_units", tl)
    assert finding.where == "4" and finding.step == 5
    assert finding.evidence["layers"] == {"2": 0.625, "4": 0.875}
    assert "and 1 more ReLU layers are mostly dead" in finding.title
    assert finding.fixes[0].params == {"lr": 0.1, "current_lr": 1.0}


def test_ordinary_sparsity_is_clean():
    # a healthy ReLU net: a unit or two silent for a whole batch, the rest alive for some examples
    tl = relu_run({"2": lambda s: 1, "4": lambda s: 2 if s < 20 else 3})
    assert findings("dead_units", tl) == []


def test_units_that_died_early_and_came_back_are_clean():
    tl = relu_run({"4": lambda s: 30 if s < 20 else 6})  # only the last samples count
    assert findings("dead_units", tl) == []


def test_the_dead_share_is_a_threshold():
    tl = relu_run({"4": lambda s: 12})  # 37.5% of the units
    assert findings("dead_units", tl) == []
    (finding,) = findings("dead_units", tl, dead_share=0.3)
    assert finding.evidence["layers"] == {"4": 0.375}


def test_one_sample_gives_no_verdict():
    tl = relu_run({"4": lambda s: 32}, last_step=3)  # sampled at step 1 only
    assert findings("dead_units", tl) == []
    assert len(findings("dead_units", tl, min_samples=1)) == 1


def test_without_a_learning_rate_the_fix_starts_with_the_activation():
    tl = relu_run({"4": lambda s: 32})
    for rec in tl.steps:
        rec.lr = None
    (finding,) = findings("dead_units", tl)
    assert finding.evidence["lr"] is None and finding.fixes[0].action == "change_activation"


@pytest.mark.parametrize("tl", [Timeline(), make_model_timeline(MLP)], ids=["empty", "no samples"])
def test_nothing_sampled_is_clean(tl):
    assert findings("dead_units", tl) == []


def test_units_seen_on_a_handful_of_values_are_no_evidence_of_death():
    """A squeeze-and-excitation ReLU on a batch of 4 images sees each unit 4 times: zero on all
    four is what a quiet channel does, not a dead one (torchvision's MobileNetV3 detectors and
    segmenters at batch 2-4 showed it)."""
    assert findings("dead_units", relu_run({"4": lambda s: 32}, per_unit=4)) == []
    assert findings("dead_units", relu_run({"4": lambda s: 32}, per_unit=16))
