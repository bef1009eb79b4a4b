"""A run cut short is never called healthy: Ctrl-C (KeyboardInterrupt) inside the script, and
SIGTERM sent to the real `torchdoctor run` process, both leave a report that says where the run
stopped and on how many steps it was judged."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

from rich.console import Console

from tests.conftest import run_script
from torchdoctor.jsonreport import to_dict
from torchdoctor.render import render
from torchdoctor.render.html import render_html

TRAIN = """\
import sys, time
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(64, 8); y = x[:, :4].argmax(1)
for step in range({steps}):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    {at_step}
"""


def text_of(report) -> str:
    buf = io.StringIO()
    render(report, Console(file=buf, width=200, color_system=None, force_terminal=False))
    return buf.getvalue()


def test_ctrl_c_at_step_5_says_interrupted_and_not_healthy(write_script):
    script = write_script(TRAIN.format(steps=1000, at_step="if step == 4: raise KeyboardInterrupt"))
    result = run_script(script)
    report = result.report
    assert result.status == 130
    assert report.timeline.run.interrupted == "Ctrl-C" and report.step_count == 5
    assert report.healthy  # nothing found in five steps...
    text = text_of(report)
    assert "interrupted at step 5 (Ctrl-C): judged on 5 steps" in text and "✔ healthy" not in text  # ...no verdict
    data = to_dict(report)
    assert data["run"]["interrupted"] == "Ctrl-C" and data["run"]["exit_status"] == 130
    page = render_html(json.loads(json.dumps(data)))
    assert "interrupted at step 5 (Ctrl-C): judged on 5 steps" in page and "✔ healthy" not in page


def test_a_run_that_ends_by_itself_is_not_marked_interrupted(write_script):
    result = run_script(write_script(TRAIN.format(steps=30, at_step="pass")))
    assert result.status == 0 and result.report.timeline.run.interrupted is None
    assert "✔ healthy: 30 steps" in text_of(result.report)


def test_sigterm_to_the_real_command_says_interrupted_and_not_healthy(write_script, tmp_path):
    """`torchdoctor run` in its own process, SIGTERM'd once the script printed that it reached
    step 5: the script's finally blocks run, the report is printed on stderr and saved."""
    script = write_script(TRAIN.format(
        steps=100_000, at_step="if step == 4: print('reached step 5', flush=True)\n    if step >= 4: time.sleep(0.05)"))
    out = tmp_path / "run.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchdoctor", "run", "--no-live", "--json", str(out), str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "reached step 5"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "(SIGTERM): judged on" in stderr and "interrupted at step" in stderr, stderr
    assert "✔ healthy" not in stderr
    data = json.loads(out.read_text())
    assert data["run"]["interrupted"] == "SIGTERM" and data["run"]["steps"] >= 5
    assert f"interrupted at step {data['run']['steps']} (SIGTERM)" in stderr
