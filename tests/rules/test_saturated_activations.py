"""saturated_activations on hand-made activation samples: a hidden tanh pinned at ±1, beside a
healthy tanh network and a final sigmoid that is confident by design."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.rules.timelines import activation_steps, findings, make_model_timeline, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

# Linear(192, 32), Tanh, Linear(32, 32), Tanh, Linear(32, 1), Sigmoid: a binary classifier
TANH_MLP = sequential_types("Flatten", "Linear", "Tanh", "Linear", "Tanh", "Linear", "Sigmoid")


def activation_run(shares: dict[str, Callable[[int], float]], last_step: int = 60,
                   module_types: dict[str, str] = TANH_MLP) -> Timeline:
    """The activation probe's samples on its sampled steps: per Sigmoid/Tanh module, the share of
    its outputs within 1% of a limit, `shares[module](step)`."""
    tl = make_model_timeline(module_types, steps=last_step + 1)
    for step in activation_steps(last_step):
        for module, share in shares.items():
            tl.habits.activations.append({"step": step, "module": module, "type": module_types[module],
                                          "saturated": share(step)})
    return tl


def test_a_hidden_tanh_pinned_at_its_limits_is_found():
    # the first Linear's weights 30x too large: its tanh outputs are ±1 for most inputs
    tl = activation_run({"2": lambda s: 0.8 + s / 1000, "4": lambda s: 0.12, "6": lambda s: 0.3})
    (finding,) = findings("saturated_activations", tl)
    assert finding.severity is Severity.WARNING
    assert finding.where == "2" and finding.step == 1
    assert finding.evidence["type"] == "Tanh" and finding.evidence["layers"] == {"2": 0.85}
    assert finding.evidence["history"] == [[1, 0.801], [5, 0.805], [10, 0.81], [20, 0.82], [50, 0.85]]
    assert "85% of the outputs of 2 (Tanh)" in finding.title
    norm, init, activation = finding.fixes
    assert norm.action == "add_normalization" and norm.params == {"module": "2", "modules": ["2"]}
    assert "nn.LayerNorm(d), nn.Tanh()" in norm.snippet
    assert init.action == "change_initialization" and init.params == {"init": "xavier_uniform_"}
    assert 'calculate_gain("tanh")' in init.snippet
    assert activation.action == "change_activation" and activation.params == {"activation": "GELU"}


def test_the_most_saturated_layer_is_named_and_the_others_counted():
    tl = activation_run({"2": lambda s: 0.7, "4": lambda s: 0.9 if s >= 10 else 0.2})
    (finding,) = findings("saturated_activations", tl)
    assert finding.where == "4" and finding.step == 10
    assert finding.evidence["layers"] == {"2": 0.7, "4": 0.9}
    assert "(1 more layers likewise)" in finding.title


def test_a_healthy_tanh_network_and_a_confident_output_sigmoid_are_clean():
    # the output sigmoid is pinned near 0 and 1 on examples it has learned: that is its job
    tl = activation_run({"2": lambda s: 0.08, "4": lambda s: 0.15, "6": lambda s: 0.95})
    assert findings("saturated_activations", tl) == []


def test_saturation_that_eased_off_is_clean():
    tl = activation_run({"2": lambda s: 0.9 if s < 20 else 0.3})  # only the last samples count
    assert findings("saturated_activations", tl) == []


def test_the_saturated_share_is_a_threshold():
    tl = activation_run({"2": lambda s: 0.35})
    assert findings("saturated_activations", tl) == []
    assert findings("saturated_activations", tl, saturated_share=0.3)[0].where == "2"


def test_one_sample_gives_no_verdict():
    tl = activation_run({"2": lambda s: 0.9}, last_step=3)  # sampled at step 1 only
    assert findings("saturated_activations", tl) == []
    assert len(findings("saturated_activations", tl, min_samples=1)) == 1


@pytest.mark.parametrize("tl", [Timeline(), make_model_timeline(TANH_MLP)], ids=["empty", "no samples"])
def test_nothing_sampled_is_clean(tl):
    assert findings("saturated_activations", tl) == []


def test_the_limit_margin_is_a_threshold_set_reaches():
    """The probe measures the pinned share at several distances from the limits; `limit_margin`
    (--set saturated_activations.limit_margin=...) picks which counts."""
    tl = activation_run({})
    for step in activation_steps(60):  # tanh outputs mostly near ±0.98: pinned within 0.05, not within 0.01
        tl.habits.activations.append({"step": step, "module": "2", "type": "Tanh", "saturated": 0.1,
                                      "saturated_at": {0.001: 0.0, 0.01: 0.1, 0.05: 0.9}})
    assert findings("saturated_activations", tl) == []
    (finding,) = findings("saturated_activations", tl, limit_margin=0.05)
    assert finding.where == "2" and finding.evidence["layers"] == {"2": 0.9}
    assert findings("saturated_activations", tl, limit_margin=0.03) == []  # rounds down to 0.01


def test_the_probe_measures_the_shares_the_rule_reads():
    """The real probe statistic on a real tanh output, at each recorded margin."""
    import torch

    from torchdoctor.layers import SATURATION_MARGINS
    from torchdoctor.probes.habits import activation_stats

    out = torch.tensor([[-0.9995, -0.995, -0.97, 0.0, 0.5, 0.97, 0.995, 0.9995]])
    shares = activation_stats("Tanh", out).tolist()
    assert dict(zip(SATURATION_MARGINS, shares, strict=True)) == pytest.approx({0.001: 0.25, 0.01: 0.5, 0.05: 0.75})
