"""Thresholds and switches: rule defaults, `[tool.torchdoctor]` in pyproject.toml, CLI options;
and the `rules` / `explain` commands that document them."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import EXAMPLES
from torchdoctor.cli import BAD_INPUT_STATUS, FAIL_ON_STATUS, main
from torchdoctor.config import ConfigError, build_config
from torchdoctor.rules import REGISTRY

CONTRACT_CORE = {"nonfinite_loss", "nonfinite_gradient", "exploding_gradients", "vanishing_gradients"}


def run_codes(tmp_path, *options: str, script=None) -> tuple[int, list[str]]:
    out = tmp_path / "r.json"
    status = main(["run", "--quiet", "--json", str(out), *options, str(script or EXAMPLES / "exploding_gradients.py"),
                   "--epochs", "2"])
    return status, [f["code"] for f in json.loads(out.read_text())["findings"]]


def test_defaults_find_the_explosion(tmp_path):
    status, codes = run_codes(tmp_path)
    assert status == 0 and "exploding_gradients" in codes


def test_cli_disable_and_set(tmp_path):
    _, codes = run_codes(tmp_path, "--disable", "exploding_gradients")
    assert "exploding_gradients" not in codes and "nonfinite_loss" in codes
    _, codes = run_codes(tmp_path, "--set", "exploding_gradients.spike_factor=1e12",
                         "--set", "exploding_gradients.growth_factor=1e12")
    assert "exploding_gradients" not in codes


def test_pyproject_next_to_the_script(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    script = project / "train.py"
    shutil.copy(EXAMPLES / "exploding_gradients.py", script)
    (project / "pyproject.toml").write_text(
        '[tool.torchdoctor]\ndisable = ["nonfinite_loss"]\nfail-on = "error"\n\n'
        "[tool.torchdoctor.exploding_gradients]\nmin_norm = 1e15\n"
    )
    status, codes = run_codes(tmp_path, script=script)
    assert codes == []  # nonfinite_loss disabled, exploding raised above any norm seen before the NaN
    (project / "pyproject.toml").write_text('[tool.torchdoctor]\nfail-on = "error"\n')
    status, codes = run_codes(tmp_path, script=script)
    assert status == FAIL_ON_STATUS and "exploding_gradients" in codes
    status, codes = run_codes(tmp_path, "--fail-on", "critical", "--disable", "nonfinite_loss", script=script)
    assert status == 0, "the CLI overrides the pyproject setting"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "no_such_rule.x=1"], "unknown finding code 'no_such_rule'"),
        (["--set", "exploding_gradients.nope=1"], "has no threshold 'nope'"),
        (["--set", "exploding_gradients.min_norm=abc"], "must be a number"),
        (["--set", "exploding_gradients"], "expects CODE.THRESHOLD=VALUE"),
        (["--disable", "nan_loss"], "unknown finding code 'nan_loss'"),
    ],
)
def test_bad_settings_are_one_line_errors(capsys, options, message):
    status = main(["run", *options, str(EXAMPLES / "healthy_cnn.py")])
    err = capsys.readouterr().err
    assert status == BAD_INPUT_STATUS and message in err and err.count("\n") == 1


def test_bad_pyproject_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("[tool.torchdoctor]\ndisable = [\n")
    script = tmp_path / "t.py"
    script.write_text("print('hi')\n")
    assert main(["run", str(script)]) == BAD_INPUT_STATUS
    assert "cannot read" in capsys.readouterr().err


def test_build_config_precedence():
    cfg = build_config({"exploding_gradients": {"window": 20}, "vanishing_gradients": {"enabled": False}},
                       settings=["exploding_gradients.window=30"], fail_on="warning")
    assert cfg.params_for(REGISTRY["exploding_gradients"])["window"] == 30
    assert "vanishing_gradients" in cfg.disabled
    assert cfg.fail_on.label == "warning"
    with pytest.raises(ConfigError):
        build_config({"verbose": True})


def test_rules_lists_every_rule_with_thresholds(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    assert CONTRACT_CORE <= set(REGISTRY)
    for code in REGISTRY:
        assert code in out
    assert "growth_factor=1000" in out


def test_explain_prints_the_rules_docstring(capsys):
    assert main(["explain", "exploding_gradients"]) == 0
    out = capsys.readouterr().out
    assert REGISTRY["exploding_gradients"].explanation.splitlines()[0] in out
    assert "spike_factor = 100" in out and "--disable exploding_gradients" in out
    assert main(["explain", "exploding_gradient"]) == BAD_INPUT_STATUS
    assert "did you mean exploding_gradients?" in capsys.readouterr().err


def test_memory_budget_from_pyproject_and_the_command_line():
    assert build_config({"memory-budget": "16GiB"}).memory_budget == 16 * 2**30
    assert build_config({"memory-budget": "16GiB"}, memory_budget="512MB").memory_budget == 512 * 10**6
    with pytest.raises(ConfigError, match="memory-budget"):
        build_config(memory_budget="a lot")
