"""double_softmax on hand-made loss-input samples: probabilities fed to CrossEntropyLoss, logits or
probabilities fed to NLLLoss, beside logits + CrossEntropyLoss and log_softmax + NLLLoss."""

from __future__ import annotations

import pytest

from tests.rules.timelines import findings, make_model_timeline, sampled, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

HEAD = ("Flatten", "Linear", "ReLU", "Linear")
WITH_SOFTMAX = sequential_types(*HEAD, "Softmax")
WITH_LOG_SOFTMAX = sequential_types(*HEAD, "LogSoftmax")
LOGITS = sequential_types(*HEAD)


def ce_run(module_types: dict[str, str], low: float, high: float, row_sum_error: float,
           steps: int = 30) -> Timeline:
    """What cross_entropy was given on the sampled steps: [min, max, max |row sum - 1|]."""
    tl = make_model_timeline(module_types, steps=steps)
    tl.habits.loss_inputs = [{"step": s, "loss": "cross_entropy", "min": low, "max": high,
                              "row_sum_error": row_sum_error} for s in range(steps) if sampled(s)]
    return tl


def nll_run(module_types: dict[str, str], high: float, lse_error: float, steps: int = 30) -> Timeline:
    """What nll_loss was given on the sampled steps: [max, max |logsumexp(row)|]."""
    tl = make_model_timeline(module_types, steps=steps)
    tl.train_loss_fn = "nll_loss"
    tl.habits.loss_inputs = [{"step": s, "loss": "nll_loss", "max": high, "lse_error": lse_error}
                             for s in range(steps) if sampled(s)]
    return tl


def test_probabilities_fed_to_cross_entropy_are_found_at_the_final_softmax():
    tl = ce_run(WITH_SOFTMAX, low=0.0013, high=0.91, row_sum_error=1.2e-7)
    (finding,) = findings("double_softmax", tl)
    assert finding.severity is Severity.ERROR
    assert finding.where == "4" and finding.step == 0
    assert finding.evidence == {"loss": "cross_entropy", "samples": 5, "probability_samples": 5, "min": 0.0013,
                                "max": 0.91, "row_sum_error": 1.2e-7}
    assert "the model ends in 4 (Softmax)" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "fix_loss_input" and fix.params == {"module": "4"}


def test_softmax_applied_in_the_script_is_found_without_a_module():
    tl = ce_run(LOGITS, low=0.02, high=0.64, row_sum_error=2.4e-7)  # F.softmax(logits) before the loss
    (finding,) = findings("double_softmax", tl)
    assert finding.where is None and finding.fixes[0].params == {"module": None}


def test_raw_logits_fed_to_nll_loss_are_found():
    (finding,) = findings("double_softmax", nll_run(LOGITS, high=4.3, lse_error=4.9))
    assert finding.severity is Severity.ERROR and finding.where is None
    assert finding.evidence == {"loss": "nll_loss", "samples": 5, "bad_samples": 5, "max": 4.3, "lse_error": 4.9}
    assert "NLLLoss was given raw logits" in finding.title
    assert finding.fixes[0].action == "fix_loss_input" and "log_softmax" in finding.fixes[0].snippet


def test_probabilities_fed_to_nll_loss_are_found_at_the_softmax():
    # Softmax then NLLLoss over 10 classes: a confident row logsumexps to about log(9 + e^0.95)
    (finding,) = findings("double_softmax", nll_run(WITH_SOFTMAX, high=0.95, lse_error=2.45))
    assert finding.where == "4" and "NLLLoss was given probabilities" in finding.title
    assert finding.fixes[0].params == {"module": "4"}


def test_logits_to_cross_entropy_are_clean():
    # even small logits at initialization: inside [0, 1] now and then, but their rows do not sum to 1
    assert findings("double_softmax", ce_run(LOGITS, low=-4.2, high=5.1, row_sum_error=3.7)) == []
    assert findings("double_softmax", ce_run(LOGITS, low=0.01, high=0.4, row_sum_error=0.35)) == []


def test_log_softmax_to_nll_loss_is_clean():
    assert findings("double_softmax", nll_run(WITH_LOG_SOFTMAX, high=-0.003, lse_error=2.4e-7)) == []


def test_probabilities_on_a_minority_of_the_samples_are_clean():
    tl = ce_run(LOGITS, low=-4.2, high=5.1, row_sum_error=3.7)
    for s in tl.habits.loss_inputs[:2]:  # 2 of 5
        s.update({"min": 0.01, "max": 0.9, "row_sum_error": 1e-7})
    assert findings("double_softmax", tl) == []


def test_the_tolerance_is_a_threshold():
    # probabilities computed in half precision: rows sum to 1 within 4e-3 only
    tl = ce_run(WITH_SOFTMAX, low=0.0, high=0.93, row_sum_error=4e-3)
    assert findings("double_softmax", tl) == []
    assert len(findings("double_softmax", tl, tolerance=1e-2)) == 1
    nll = nll_run(WITH_LOG_SOFTMAX, high=-0.002, lse_error=5e-3)
    assert findings("double_softmax", nll) == []
    assert len(findings("double_softmax", nll, tolerance=1e-4)) == 1


@pytest.mark.parametrize("tl", [Timeline(), make_model_timeline(WITH_SOFTMAX)], ids=["empty", "no samples"])
def test_nothing_sampled_is_clean(tl):
    assert findings("double_softmax", tl) == []
