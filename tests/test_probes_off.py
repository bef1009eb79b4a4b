"""Probes switched off (`Doctor(probes_off=...)`, `run --no-probe NAME`): the run is watched without
them, the findings that need them are not made, and a name that is no probe is bad input."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, cli, run_script
from torchdoctor.session import OPTIONAL_PROBES, Doctor


def test_without_the_source_probe_the_fix_has_no_location_and_the_diagnosis_stands():
    on = run_script(EXAMPLES / "no_eval_mode.py").report.by_code("eval_mode_missing")
    assert on.fixes[0].location is not None
    off = Doctor(print_report=False, probes_off={"sources"})
    from torchdoctor.execfile import prepare_script

    report = off.run(prepare_script(str(EXAMPLES / "no_eval_mode.py")), []).report
    finding = report.by_code("eval_mode_missing")
    assert finding is not None and finding.fixes[0].location is None
    assert report.timeline.sources == {}


def test_without_the_data_probe_no_loader_is_seen():
    from torchdoctor.execfile import prepare_script

    report = Doctor(print_report=False, probes_off={"data"}).run(
        prepare_script(str(EXAMPLES / "healthy_cnn.py")), ["--epochs", "1"]).report
    assert report.timeline.habits.loaders == {} and report.timeline.steps  # still trained and watched


def test_an_unknown_probe_is_refused():
    with pytest.raises(ValueError, match="no such probe: optimizer"):
        Doctor(probes_off={"optimizer"})  # the core probes cannot be switched off
    result = cli("run", "--no-probe", "nope", str(EXAMPLES / "healthy_cnn.py"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert all(name in result.stderr for name in OPTIONAL_PROBES)
