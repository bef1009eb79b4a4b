"""The everyday-bug examples, run as `torchdoctor run` runs them: each faulty script gets its
diagnosis, and its `--fixed` control (the intentional version of the same code) is healthy."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, run_script

EVERYDAY_EXAMPLES = [
    # (script, the code its faulty run must get, the `where` that finding must name, or None: not checked)
    ("frozen_backbone.py", "frozen_parameters", "backbone"),
    ("missing_zero_grad.py", "missing_zero_grad", None),
    ("double_softmax.py", "double_softmax", None),
    ("raw_pixels.py", "unnormalized_input", None),
    ("no_eval_mode.py", "eval_mode_missing", None),
]
IDS = [script.removesuffix(".py") for script, _, _ in EVERYDAY_EXAMPLES]


def describe(report) -> list[tuple[str, str, str | None, str]]:
    return [(f.code, f.severity.name.lower(), f.where, f.title) for f in report.findings]


@pytest.mark.parametrize(("script", "code", "where"), EVERYDAY_EXAMPLES, ids=IDS)
def test_the_faulty_example_gets_its_diagnosis(script, code, where):
    result = run_script(EXAMPLES / script)
    assert result.status == 0, describe(result.report)
    finding = result.report.by_code(code)
    assert finding is not None, describe(result.report)
    if where is not None:
        assert finding.where == where, describe(result.report)


@pytest.mark.parametrize(("script", "code", "where"), EVERYDAY_EXAMPLES, ids=IDS)
def test_the_fixed_example_is_healthy(script, code, where):
    result = run_script(EXAMPLES / script, "--fixed")
    assert result.status == 0, describe(result.report)
    assert result.report.healthy, describe(result.report)
    assert code not in result.codes, describe(result.report)


def test_each_validation_loss_of_a_loader_is_counted_once():
    """4 validation batches x 5 epochs: the loss torchdoctor derives for a batch and the script's own
    loss on it are one evaluation, not two."""
    finding = run_script(EXAMPLES / "no_eval_mode.py").report.by_code("eval_mode_missing")
    assert finding.evidence["evaluation_losses"] == 20
