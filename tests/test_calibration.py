"""The calibration corpus, end to end: every healthy script must come out with nothing at warning
or above, every faulty twin must be found with the right code, severity, step and cause.

Slow (one real training run per script, about a minute or two in all), so marked `corpus`: the
default run skips it (`-m 'not corpus'` in pyproject.toml) and CI runs it with `-m corpus`.
"""

from __future__ import annotations

import pytest

from tests.calibration.judge import describe, judge
from tests.calibration.manifest import CASES, FAULTY, HEALTHY, Case
from tests.conftest import run_script

pytestmark = pytest.mark.corpus


def _check(case: Case) -> None:
    result = run_script(case.path, *case.args)
    verdict = judge(case, result.report.findings, result.status)
    if not verdict.passed:  # pytest.fail: the message alone, without the Verdict's repr
        pytest.fail(f"{case.name}: " + "; ".join(verdict.problems) + (f"\n  ({case.note})" if case.note else "")
                    + "\nfindings:\n" + describe(result.report.findings), pytrace=False)


def test_corpus_is_large_enough() -> None:
    """The issue asks for at least 30 healthy scripts and a twin for each failure shape."""
    assert len(HEALTHY) >= 30
    assert {c.code for c in FAULTY} >= {"divergence", "loss_plateau", "missing_zero_grad", "memory_leak",
                                        "dead_units"}
    assert all(c.path.is_file() for c in CASES)


@pytest.mark.parametrize("case", HEALTHY, ids=lambda c: c.name)
def test_healthy_script_is_clean(case: Case) -> None:
    _check(case)


@pytest.mark.parametrize("case", FAULTY, ids=lambda c: c.name)
def test_faulty_twin_is_found(case: Case) -> None:
    _check(case)
