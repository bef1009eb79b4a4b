"""The `torchdoctor` command: pass-through of the script's streams and status, bad input, gating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import EXAMPLES, cli
from torchdoctor.cli import BAD_INPUT_STATUS, FAIL_ON_STATUS, main

SCRIPT_EXIT = """
import sys, torch
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()
print("argv", sys.argv[1:])
sys.exit(int(sys.argv[1]))
"""

SCRIPT_RAISES = """
import torch

def train():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()
    raise ValueError("boom from the user's code")

train()
"""


def test_healthy_run_keeps_stdout_clean_and_reports_on_stderr():
    result = cli("run", str(EXAMPLES / "healthy_cnn.py"), "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(result.stdout.splitlines()) == 2
    assert "torchdoctor" not in result.stdout
    assert "healthy: 32 steps" in result.stderr


def test_json_report_and_fail_on(tmp_path):
    out = tmp_path / "report.json"
    result = cli("run", "--json", str(out), "--fail-on", "error", str(EXAMPLES / "exploding_gradients.py"),
                 "--epochs", "2")
    assert result.returncode == FAIL_ON_STATUS, result.stderr
    report = json.loads(out.read_text())
    assert report["schema"] == "torchdoctor.report/1"
    assert report["run"]["exit_status"] == 0
    assert report["run"]["argv"][1:] == ["--epochs", "2"]
    assert report["run"]["steps"] == 32 and report["run"]["epochs"] == 2
    codes = [f["code"] for f in report["findings"]]
    # the cause leads; the NaN it led to follows it, marked as its consequence
    assert codes[:2] == ["exploding_gradients", "nonfinite_loss"]
    assert report["findings"][1]["caused_by"] == "exploding_gradients" and report["findings"][0]["caused_by"] is None
    for finding in report["findings"]:
        assert set(finding) >= {"code", "severity", "title", "step", "epoch", "where", "evidence", "fixes"}
        assert finding["fixes"] and all({"action", "text", "params"} <= set(f) for f in finding["fixes"])
    assert report["metrics"]["loss"]["train"][0][0] == 0
    assert report["gradients"]["layers"][0]["name"] == "0"


def test_exit_status_and_argv_pass_through(tmp_path):
    script = tmp_path / "exits.py"
    script.write_text(SCRIPT_EXIT)
    result = cli("run", str(script), "7", "--epochs", "x")
    assert result.returncode == 7
    assert "argv ['7', '--epochs', 'x']" in result.stdout
    assert "3 steps" in result.stderr


def test_uncaught_exception_shows_users_traceback_and_still_reports(tmp_path):
    script = tmp_path / "raises.py"
    script.write_text(SCRIPT_RAISES)
    result = cli("run", str(script))
    assert result.returncode == 1
    assert "ValueError: boom from the user's code" in result.stderr
    assert f'File "{script}", line 9, in train' in result.stderr
    assert "torchdoctor/" not in result.stderr.split("ValueError")[0]  # our frames are hidden
    assert "5 steps" in result.stderr  # the report still came


@pytest.mark.parametrize(("sig", "status", "shown"), [(signal.SIGINT, 130, "KeyboardInterrupt"),
                                                     (signal.SIGTERM, 143, "")])
def test_ctrl_c_and_sigterm_still_leave_a_report(tmp_path, sig, status, shown):
    script = tmp_path / "forever.py"
    script.write_text(
        "import torch, sys\nmodel = torch.nn.Linear(3, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.01)\n"
        "step = 0\nwhile True:\n    opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()\n"
        "    step += 1\n    if step == 5: print('ready', flush=True)\n"
    )
    out = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "torchdoctor", "run", "--json", str(out), str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status
    assert shown in err and "torchdoctor forever.py" in err
    assert json.loads(out.read_text())["run"]["exit_status"] == status


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.py"), "no such file"),
        (lambda d: str(d), "is a directory"),
        (lambda d: _write(d / "data.bin", b"\x7fELF\x00\x01\x02"), "not a Python script"),
        (lambda d: _write(d / "notes.txt", b"this is not python at all\n"), "not a Python script"),
        (lambda d: _write(d / "broken.py", b"def f(:\n    pass\n"), "syntax error in"),
    ],
)
def test_bad_script_is_one_line_and_status_2(tmp_path, capsys, make, message):
    status = main(["run", make(tmp_path)])
    err = capsys.readouterr().err
    assert status == BAD_INPUT_STATUS
    assert message in err
    assert err.count("\n") == 1 and err.startswith("torchdoctor: error:")
    assert "Traceback" not in err


def test_unwritable_json_path_is_checked_before_anything_runs(tmp_path, capsys):
    script = _write(tmp_path / "side_effect.py", b"open('ran.txt', 'w').write('ran')\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        target = locked / "r.json"
        if os.access(locked, os.W_OK):  # root ignores permissions: use a missing directory instead
            target = tmp_path / "no" / "such" / "dir" / "r.json"
        status = main(["run", "--json", str(target), str(tmp_path / "missing.py")])
        err = capsys.readouterr().err
        assert status == BAD_INPUT_STATUS and "--json" in err and "missing.py" not in err
        status = main(["run", "--json", str(target), script])
        assert status == BAD_INPUT_STATUS
        assert not (tmp_path / "ran.txt").exists()
    finally:
        locked.chmod(0o700)


def test_json_path_that_is_a_directory(tmp_path, capsys):
    assert main(["run", "--json", str(tmp_path), str(EXAMPLES / "healthy_cnn.py")]) == BAD_INPUT_STATUS
    assert "is a directory" in capsys.readouterr().err


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


SCRIPT_ATEXIT = """
import atexit, sys, torch

def written():  # reads sys.argv at exit, as a script's logging shutdown may
    with open(sys.argv[1], "w") as f:
        f.write(" ".join(sys.argv[1:]))

atexit.register(written)
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()
"""


def test_the_scripts_exit_handlers_see_its_own_arguments(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT_ATEXIT)
    out = tmp_path / "argv.txt"
    result = cli("run", str(script), str(out), "--epochs", "3")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == f"{out} --epochs 3"
