"""What tests/test_diagnoses.py leaves out: the examples pushed past their defaults, and the
contract every finding of every faulty example must meet (concrete fixes, strict JSON)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import EXAMPLES, SCRIPTS, run_script
from torchdoctor import Severity
from torchdoctor.jsonreport import to_dict


@pytest.mark.parametrize(("lr", "overflowed"), [("0.012", False), ("0.05", True)])
def test_a_learning_rate_far_too_high_is_still_exploding_before_the_nan(lr, overflowed):
    """NaN within 4-5 steps: before the spike criterion has history, and at 0.05 the total norm
    overflows float32 while every gradient is finite. Both used to end in a nonfinite_loss
    finding that blamed a hand-written loss (the script uses F.mse_loss) and prescribed
    `fix_loss_input`, with no exploding_gradients at all."""
    result = run_script(EXAMPLES / "exploding_gradients.py", "--epochs", "1", "--lr", lr)
    explode = result.report.by_code("exploding_gradients")
    nan = result.report.by_code("nonfinite_loss")
    assert explode is not None and nan is not None
    assert explode.severity is Severity.ERROR and explode.evidence["criterion"] == "growth"
    assert explode.step < nan.step <= 5
    assert explode.evidence["norm_overflowed"] is overflowed
    assert nan.evidence["gradients_were_exploding"] is True
    assert nan.fixes[0].action == "lower_learning_rate"
    assert nan.fixes[0].params["lr"] == pytest.approx(float(lr) / 10)
    assert "fix_loss_input" not in [f.action for f in nan.fixes]
    if not overflowed:
        fixed = run_script(EXAMPLES / "exploding_gradients.py", "--epochs", "2", "--lr", str(nan.fixes[0].params["lr"]))
        assert fixed.report.healthy, fixed.report.codes()


FAULTY = [
    (EXAMPLES / "exploding_gradients.py", ["--epochs", "2"], {"exploding_gradients", "nonfinite_loss"}),
    (EXAMPLES / "nan_input.py", ["--epochs", "1"], {"nonfinite_loss"}),
    (EXAMPLES / "nan_custom_loss.py", ["--epochs", "1"], {"nonfinite_loss", "unnormalized_input"}),
    (EXAMPLES / "nonfinite_gradient.py", ["--epochs", "1"], {"nonfinite_gradient", "nonfinite_loss"}),
    (EXAMPLES / "vanishing_gradients.py", ["--epochs", "1"], {"vanishing_gradients"}),
    (SCRIPTS / "nan_in_module.py", [], {"nonfinite_loss"}),
    (EXAMPLES / "slow_loader.py", [], {"dataloader_bottleneck"}),
    (EXAMPLES / "dead_relu.py", [], {"dead_units"}),
    (EXAMPLES / "saturated_tanh.py", [], {"saturated_activations"}),
]


@pytest.mark.parametrize(("script", "args", "codes"), FAULTY, ids=[s.name for s, _, _ in FAULTY])
def test_every_finding_of_a_faulty_example_is_concrete(script, args, codes):
    report = run_script(script, *args).report
    assert set(report.codes()) == codes
    for finding in report.findings:
        assert finding.title and finding.evidence, finding.code
        assert finding.fixes, f"{finding.code} has no fix"
        for fix in finding.fixes:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", fix.action) and fix.text, (finding.code, fix)
            if fix.action == "lower_learning_rate":
                assert 0 < fix.params["lr"] < fix.params["current_lr"]
            if fix.action == "clip_gradients":
                assert fix.params["max_norm"] > 0
    data = to_dict(report)
    json.dumps(data, allow_nan=False)  # NaN/Inf evidence is written as strings: the JSON is strict
    assert [f["code"] for f in data["findings"]] == report.codes()


@pytest.mark.parametrize("name", ["slow_loader.py", "dead_relu.py", "saturated_tanh.py"])
def test_the_fixed_twin_of_an_everyday_example_is_clean(name):
    result = run_script(EXAMPLES / name, "--fixed")
    assert result.status == 0 and result.report.findings == [], result.report.codes()
