"""unnormalized_input on hand-made input samples: raw 0-255 pixels and features in their own units,
beside inputs in [0, 1], standardized inputs and a model that normalizes its input itself."""

from __future__ import annotations

import pytest

from tests.rules.timelines import findings, make_model_timeline, sampled, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

CNN = sequential_types("Conv2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear")
BN_FIRST = sequential_types("BatchNorm2d", "Conv2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear")
MLP = {"Regressor": "Regressor", "body": "Sequential", "body.0": "Linear", "body.1": "ReLU", "body.2": "Linear"}

# CIFAR-10 as uint8 pixels cast to float: its per-channel statistics
CIFAR_MEAN, CIFAR_STD = [125.3, 122.95, 113.87], [62.99, 62.09, 66.7]


def input_run(module_types: dict[str, str], low: float, high: float, mean: float, std: float,
              shape: list[int], channel_mean: list[float] | None = None, channel_std: list[float] | None = None,
              steps: int = 30) -> Timeline:
    """The input probe's samples of the model's float input on its sampled steps: min, max, mean,
    std, and per-channel means and stds for images of 4 channels or fewer."""
    tl = make_model_timeline(module_types, steps=steps)
    for s in range(steps):
        if sampled(s):
            sample = {"step": s, "shape": shape, "min": low, "max": high, "mean": mean, "std": std}
            if channel_mean is not None:
                sample["channel_mean"], sample["channel_std"] = channel_mean, channel_std
            tl.habits.inputs.append(sample)
    return tl


def pixels(module_types: dict[str, str] = CNN, scale: float = 1.0) -> Timeline:
    return input_run(module_types, 0.0, 255.0 * scale, 120.7 * scale, 64.15 * scale, [64, 3, 32, 32],
                     [m * scale for m in CIFAR_MEAN], [v * scale for v in CIFAR_STD])


def test_raw_pixels_are_found_with_the_channel_statistics():
    (finding,) = findings("unnormalized_input", pixels())
    assert finding.severity is Severity.WARNING
    assert finding.where == "0" and finding.step == 0
    ev = finding.evidence
    assert (ev["min"], ev["max"], ev["mean"], ev["std"]) == (0.0, 255.0, 120.7, 64.15)
    assert ev["shape"] == [64, 3, 32, 32] and ev["samples"] == ev["unnormalized_samples"] == 5
    assert ev["channel_mean"] == CIFAR_MEAN and ev["channel_std"] == CIFAR_STD
    assert "raw 0-255 pixels" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "normalize_input"
    assert fix.params == {"mean": [0.491, 0.482, 0.447], "std": [0.247, 0.243, 0.262], "divide_by": 255}
    assert "x = x.float() / 255.0" in fix.snippet
    assert "Normalize(mean=[0.491, 0.482, 0.447], std=[0.247, 0.243, 0.262])" in fix.snippet


def test_features_in_their_own_units_are_found_with_their_statistics():
    # house prices and areas: no channels, far from pixels
    tl = input_run(MLP, low=-124.0, high=520_000.0, mean=18_234.5678, std=61_000.04321, shape=[128, 8])
    (finding,) = findings("unnormalized_input", tl)
    assert finding.where == "body.0"  # the first layer that ran, the containers skipped
    assert "unscaled values" in finding.title
    fix = finding.fixes[0]
    assert fix.params == {"mean": 18234.5678, "std": 61000.0432, "divide_by": None}
    assert fix.snippet.startswith("x = (x - 18234.5678) / 61000.0432")


@pytest.mark.parametrize("tl", [
    pixels(scale=1 / 255),  # ToTensor(): [0, 1]
    input_run(CNN, -2.43, 2.75, 0.01, 0.99, [64, 3, 32, 32], [0.0, 0.01, 0.02], [1.0, 0.98, 0.99]),  # Normalize
    pixels(module_types=BN_FIRST),  # the model's first layer standardizes the pixels itself
    input_run(MLP, low=-30.0, high=40.0, mean=5.0, std=8.0, shape=[128, 8]),  # not far above 1
], ids=["0-1", "standardized", "batchnorm first", "moderate scale"])
def test_normalized_inputs_are_clean(tl):
    assert findings("unnormalized_input", tl) == []


def test_a_minority_of_unnormalized_batches_is_clean():
    tl = pixels(scale=1 / 255)
    tl.habits.inputs[1].update(min=0.0, max=255.0, mean=120.7, std=64.15)  # 1 of 5 batches not scaled
    assert findings("unnormalized_input", tl) == []


def test_the_scale_is_a_threshold():
    tl = input_run(MLP, low=-30.0, high=40.0, mean=5.0, std=8.0, shape=[128, 8])
    (finding,) = findings("unnormalized_input", tl, max_scale=4.0)
    assert finding.evidence["std"] == 8.0
    assert findings("unnormalized_input", pixels(), max_scale=300.0) == []


@pytest.mark.parametrize("tl", [Timeline(), make_model_timeline(CNN)], ids=["empty", "no samples"])
def test_nothing_sampled_is_clean(tl):
    # integer inputs (token indices) are not sampled: nothing to judge either
    assert findings("unnormalized_input", tl) == []
