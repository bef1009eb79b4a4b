"""Every diagnosis end to end: a faulty example that must be found (code, step, where) and a
healthy control that must stay clean. Real trainings of the scripts in examples/."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, SCRIPTS, run_script
from torchdoctor import Severity


def warnings_or_worse(report) -> list[str]:
    return [f.code for f in report.findings if f.severity >= Severity.WARNING]


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("healthy_cnn.py", ["--epochs", "2"]),
        ("healthy_deep_mlp.py", ["--epochs", "2"]),
        ("healthy_masked_attention.py", ["--epochs", "2"]),
    ],
)
def test_healthy_controls_stay_clean(script, args):
    result = run_script(EXAMPLES / script, *args)
    assert result.status == 0
    assert len(result.report.timeline.steps) > 0
    assert warnings_or_worse(result.report) == []
    assert result.report.healthy
    assert result.report.internal_errors == []


def test_resnet18_stays_clean():
    result = run_script(SCRIPTS / "resnet_cifar.py", "--steps", "6")
    assert len(result.report.timeline.steps) == 6
    assert warnings_or_worse(result.report) == []


def test_exploding_gradients_found_before_the_nan_and_the_suggested_lr_fixes_it():
    result = run_script(EXAMPLES / "exploding_gradients.py", "--epochs", "2")
    explode = result.report.by_code("exploding_gradients")
    nan = result.report.by_code("nonfinite_loss")
    assert explode is not None and nan is not None
    assert explode.severity is Severity.ERROR and explode.step == 24
    assert nan.step == 26 and explode.step < nan.step
    assert explode.evidence["ratio"] > 100 and explode.evidence["nonfinite_from_step"] == 26
    clip = next(f for f in explode.fixes if f.action == "clip_gradients")
    lower = next(f for f in explode.fixes if f.action == "lower_learning_rate")
    assert 10 < clip.params["max_norm"] < 200  # around the healthy norms (~38), far below the 8659 spike
    assert lower.params["lr"] == pytest.approx(0.0004)

    fixed = run_script(EXAMPLES / "exploding_gradients.py", "--epochs", "2", "--lr", str(lower.params["lr"]))
    assert fixed.report.healthy, fixed.report.codes()


def test_nan_input_traced_to_the_batch():
    result = run_script(EXAMPLES / "nan_input.py", "--epochs", "1")
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.severity is Severity.CRITICAL
    assert finding.step == 6  # sample 100 sits in the 7th batch of 16
    assert finding.evidence["origin"] == "input" and finding.where is None
    assert finding.evidence["input"]["nan_count"] == 1
    assert finding.fixes[0].action == "clean_input_data"
    assert "exploding_gradients" not in result.report.codes()


def test_nan_in_hand_written_loss_traced_to_the_loss():
    result = run_script(EXAMPLES / "nan_custom_loss.py", "--epochs", "1")
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 1
    assert finding.evidence["origin"] == "loss"
    assert finding.fixes[0].action == "fix_loss_input"
    assert "binary_cross_entropy_with_logits" in finding.fixes[0].snippet


def test_nan_traced_to_the_module_that_overflowed():
    result = run_script(SCRIPTS / "nan_in_module.py")
    finding = result.report.by_code("nonfinite_loss")
    assert finding.step == 4
    assert finding.evidence["origin"] == "body.2" and finding.where == "body.2"
    assert finding.evidence["module_type"] == "Energy"
    # One outlier batch in a steady run: the batch is to blame, not the learning rate.
    actions = [f.action for f in finding.fixes]
    assert actions == ["add_epsilon", "normalize_input"]


def test_nan_from_functional_code_is_blamed_on_the_enclosing_module():
    result = run_script(SCRIPTS / "nan_functional_in_custom.py")
    finding = result.report.by_code("nonfinite_loss")
    assert finding.step == 0 and finding.evidence["origin"] == "block"


def test_masked_attention_with_an_empty_row_is_a_real_nan_in_attn():
    result = run_script(EXAMPLES / "healthy_masked_attention.py", "--epochs", "1", "--min-len", "0")
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.evidence["origin"] == "attn"


def test_nonfinite_gradient_names_the_layers_before_the_sqrt():
    result = run_script(EXAMPLES / "nonfinite_gradient.py", "--epochs", "1")
    grad = result.report.by_code("nonfinite_gradient")
    assert grad is not None and grad.severity is Severity.CRITICAL
    assert grad.step == 5  # the blank frame 170 is in batch 5
    assert grad.where == "features.2"
    assert grad.evidence["first_affected"] == ["features.2.weight"]
    assert grad.evidence["next_finite_layer"] == "head"
    assert grad.fixes[0].action == "add_epsilon"
    # The NaN loss of the next step is recognised as its consequence, not a second cause.
    nan = result.report.by_code("nonfinite_loss")
    assert nan is not None and nan.step == 6
    assert nan.evidence["caused_by"] == {"code": "nonfinite_gradient", "step": 5}
    assert [f.action for f in nan.fixes] == ["fix_nonfinite_gradient"]


def test_vanishing_gradients_in_a_deep_sigmoid_stack():
    result = run_script(EXAMPLES / "vanishing_gradients.py", "--epochs", "2")
    finding = result.report.by_code("vanishing_gradients")
    assert finding is not None and finding.severity is Severity.ERROR
    assert finding.where == "0" and finding.evidence["last_layer"] == "18"
    assert finding.evidence["ratio_first_last"] < 1e-5
    assert finding.fixes[0].action == "change_activation"
    assert set(finding.fixes[0].params["modules"]) == {str(i) for i in range(1, 18, 2)}
    assert warnings_or_worse(result.report) == ["vanishing_gradients"]
