"""What a new user trips over at the command line (issue 15, items 4 and 8): options in the wrong
place, `explain` typos, `rules` at 80 columns, "1 epochs", torch.compile's global-hook warning.
Each through the real command, on what the user sees: the text and the exit status."""

from __future__ import annotations

import re

from tests.conftest import EXAMPLES, cli
from torchdoctor.cli import BAD_INPUT_STATUS, main
from torchdoctor.rules import REGISTRY

SCRIPT = """
import sys, torch
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()
open("ran.txt", "w").write("ran")
print("argv", sys.argv[1:])
"""

COMPILED = """
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
compiled = torch.compile(model, backend="eager")
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(12):
    loss = F.cross_entropy(compiled(torch.randn(16, 8)), torch.randint(0, 3, (16,)))
    opt.zero_grad(); loss.backward(); opt.step()
print("done")
"""


def test_a_mistyped_option_before_the_script_is_named_as_an_option(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    status = main(["run", "--jsn", str(tmp_path / "x.json"), str(script)])
    err = capsys.readouterr().err
    assert status == BAD_INPUT_STATUS
    assert err == "torchdoctor: error: no such option: --jsn (did you mean --json?)\n"
    assert main(["run", "--fail-onn=error", str(script)]) == BAD_INPUT_STATUS
    assert "no such option: --fail-onn (did you mean --fail-on?)" in capsys.readouterr().err
    assert main(["run", "--zzzz", str(script)]) == BAD_INPUT_STATUS
    assert capsys.readouterr().err == "torchdoctor: error: no such option: --zzzz (see `torchdoctor run --help`)\n"
    assert not (tmp_path / "ran.txt").exists()  # nothing ran


def test_torchdoctors_options_after_the_script_go_to_it_and_the_report_says_so_once(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    result = cli("run", str(script), "--json", "r.json", "-q", "--epochs", "3", "--fail-on=error", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the script received exactly what it was given; torchdoctor took none of it
    assert "argv ['--json', 'r.json', '-q', '--epochs', '3', '--fail-on=error']" in result.stdout
    assert not (tmp_path / "r.json").exists()
    assert "3 steps" in result.stderr  # -q went to the script: the report was printed
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert result.stderr.count("went to") == 1
    assert last.startswith("torchdoctor: note: --json r.json, -q, --fail-on=error went to")
    assert last.endswith(f"put them before the script: torchdoctor run --json r.json -q --fail-on=error {script} ...")


def test_no_note_when_the_scripts_arguments_are_its_own(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    result = cli("run", "-q", str(script), "--epochs", "3", "--", "--json", "x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "argv ['--epochs', '3', '--', '--json', 'x']" in result.stdout
    assert result.stderr == ""  # -q before the script: no report, and no note


def test_explain_takes_any_case_and_hyphens_and_suggests_the_closest_code(capsys):
    for spelling in ("Exploding-Gradients", "EXPLODING_GRADIENTS", " exploding_gradients"):
        assert main(["explain", spelling]) == 0
        assert capsys.readouterr().out.startswith("exploding_gradients (error):")
    for typo, suggestion in [("explode", "exploding_gradients"), ("memory_leek", "memory_leak"),
                             ("dead", "dead_units"), ("overfit", "overfitting")]:
        assert main(["explain", typo]) == BAD_INPUT_STATUS
        err = capsys.readouterr().err
        assert f"did you mean {suggestion}" in err and err.count("\n") == 1, err
    assert main(["explain", "gradient"]) == BAD_INPUT_STATUS
    assert "exploding_gradients, nonfinite_gradient or vanishing_gradients?" in capsys.readouterr().err
    assert main(["explain", "zzz"]) == BAD_INPUT_STATUS
    assert "(see `torchdoctor rules`)" in capsys.readouterr().err


def test_explain_prints_integers_as_integers_and_bytes_as_sizes(capsys):
    assert main(["explain", "memory_leak"]) == 0
    out = capsys.readouterr().out
    assert "min_total_growth = 16 MiB (16777216 bytes" in out and "min_growth_per_step = 64 KiB" in out
    assert "rss_factor = 16 " in out and "e+0" not in out


def test_rules_shows_every_threshold_in_full_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("rules")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out and "e+0" not in out
    for code, rule in REGISTRY.items():
        assert code in out
        for name, param in rule.params.items():
            value = float(param.default)
            shown = str(int(value)) if value.is_integer() else repr(value)
            if param.help.startswith("bytes"):
                shown = {65536: "64 KiB", 16 * 2**20: "16 MiB"}[int(value)]
            assert re.search(rf"(^|\s){name}={re.escape(shown)}\s*$", out, re.M), (code, name, shown)
    assert "min_total_growth=16 MiB" in out and "min_oscillation_steps=100" in out


def test_one_epoch_is_one_epoch_in_the_report_header():
    result = cli("run", "--no-live", str(EXAMPLES / "healthy_cnn.py"), "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert " · 1 epoch · " in result.stderr and "1 epochs" not in result.stderr


def test_torch_compile_under_run_shows_no_global_hook_warning_of_ours(tmp_path):
    script = tmp_path / "compiled.py"
    script.write_text(COMPILED)
    result = cli("run", "--no-live", str(script), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout and "12 steps" in result.stderr
    assert "global hooks" not in result.stderr
    assert "torchdoctor/probes" not in result.stderr
