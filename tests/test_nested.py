"""A watch inside a watch: scripts that use the API (`watch` as a context manager and decorator,
`fit`) run unchanged under `torchdoctor run`, and two watches nest in plain Python. The inner watch
joins the outer doctor: one set of probes, one report, and the script's own `doctor.report` is the
diagnosis of what had been recorded when its block ended."""

from __future__ import annotations

import io
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

import torchdoctor
from tests.conftest import cli, run_script

# A learnable task (two features decide the class): 192 samples in batches of 16, 3 epochs, 36 steps.
PRELUDE = """
import json, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
import torchdoctor

torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
x = torch.randn(256, 8, generator=g)
y = (x[:, 0] + x[:, 1] > 0).long()
loader = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=16, shuffle=True, generator=g)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.Adam(model.parameters(), lr=0.01)

def train(model, opt, epochs=3):
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()

def seen(report, **extra):
    with open(sys.argv[1], "w") as f:
        json.dump({"healthy": report.healthy, "steps": len(report.timeline.steps), "codes": report.codes(),
                   **extra}, f)
"""

WITH_BLOCK = PRELUDE + """
with torchdoctor.watch(model, opt) as doctor:
    train(model, opt)
seen(doctor.report, fails=doctor.fails())
"""

DECORATOR = PRELUDE + """
@torchdoctor.watch()
def run_training():
    train(model, opt)

run_training()
seen(run_training.doctor.report)
"""

FIT = PRELUDE + """
result = torchdoctor.fit(model, loader, opt, nn.CrossEntropyLoss(), epochs=3)
seen(result.report, epochs=len(result.history))
"""

STEPS = 36


def _run(write_script, tmp_path, source: str):
    path = write_script(source)
    out = tmp_path / "seen.json"
    result = run_script(path, str(out))
    return result, json.loads(out.read_text())


@pytest.mark.parametrize("source", [WITH_BLOCK, DECORATOR, FIT], ids=["with", "decorator", "fit"])
def test_a_script_using_the_api_runs_under_run(write_script, tmp_path, source):
    result, seen = _run(write_script, tmp_path, source)
    assert result.status == 0
    assert "script_error" not in result.codes, result.codes
    assert len(result.report.timeline.steps) == STEPS
    assert result.report.healthy, result.codes
    assert [m.name for m in result.report.timeline.models] == ["Sequential"]  # one set of probes
    # The script's own report: what had been recorded when its block ended (all of the training).
    assert seen["steps"] == STEPS and seen["healthy"], seen
    assert seen.get("fails", False) is False
    if source is FIT:
        assert seen["epochs"] == 3


def test_a_faulty_inner_loop_is_found_in_the_outer_report(write_script, tmp_path):
    """A NaN in the input data, trained through fit(): traced to the input in both reports."""
    source = PRELUDE + """
xs = torch.randn(64, 4)
xs[40, 2] = float("nan")
data = DataLoader(TensorDataset(xs, torch.randn(64, 1)), batch_size=16)
net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
result = torchdoctor.fit(net, data, torch.optim.SGD(net.parameters(), lr=0.01), nn.MSELoss(), epochs=1)
seen(result.report)
"""
    result, seen = _run(write_script, tmp_path, source)
    assert result.status == 0
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 2
    assert finding.evidence["origin"] == "input"
    assert "script_error" not in result.codes
    assert "nonfinite_loss" in seen["codes"] and not seen["healthy"]


def test_log_and_json_path_of_the_inner_watch_reach_the_outer_report(write_script, tmp_path):
    inner_json = tmp_path / "inner.json"
    source = PRELUDE + f"""
import os
with torchdoctor.watch(json_path={str(inner_json)!r}) as doctor:
    train(model, opt)
    doctor.log(val_loss=0.4321, val_acc=0.9)
seen(doctor.report, written=os.path.exists({str(inner_json)!r}),
     evals=[e.loss for e in doctor.report.timeline.evaluations])
"""
    result, seen = _run(write_script, tmp_path, source)
    assert result.status == 0 and "script_error" not in result.codes
    logged = [e for e in result.report.timeline.evaluations if e.source == "log"]
    assert [(e.loss, e.accuracy) for e in logged] == [(0.4321, 0.9)]
    assert seen["written"] and seen["evals"] == [0.4321]  # written as the block ended, for the script
    saved = json.loads(inner_json.read_text())  # and again with the outer doctor's final report
    assert saved["run"]["exit_status"] == 0 and saved["run"]["steps"] == STEPS
    assert [e["loss"] for e in saved["metrics"]["evaluations"] if e["source"] == "log"] == [0.4321]


def _plain_training(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 30) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), (x[:, 0] > 0).long()).backward()
        opt.step()


def test_two_nested_watches_in_plain_python_join():
    from torch.nn.modules import module as module_mod

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    outer_buf, inner_buf = io.StringIO(), io.StringIO()
    backward = torch.autograd.backward
    with torchdoctor.watch(model, opt, console=Console(file=outer_buf, width=100)) as outer:
        with torchdoctor.watch(model, opt, console=Console(file=inner_buf, width=100)) as inner:
            _plain_training(model, opt)
            inner.log(val_loss=0.5)
        assert inner.report is not None and len(inner.report.timeline.steps) == 30
        assert outer.report is None  # still watching
        _plain_training(model, opt, steps=5)
    assert len(outer.report.timeline.steps) == 35
    assert len(inner.report.timeline.steps) == 30  # a snapshot: the outer's later steps are not in it
    assert [e.loss for e in outer.report.timeline.evaluations if e.source == "log"] == [0.5]
    assert outer_buf.getvalue() and not inner_buf.getvalue()  # one report, the outer's
    assert torch.autograd.backward is backward
    assert not module_mod._global_forward_hooks and not module_mod._global_forward_pre_hooks


def test_the_inner_watch_prints_when_the_outer_does_not():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    buf = io.StringIO()
    with torchdoctor.watch(print_report=False):
        with torchdoctor.watch(model, opt, console=Console(file=buf, width=100)):
            _plain_training(model, opt)
    assert "30 steps" in buf.getvalue()


def test_a_model_first_trained_after_discovery_settled_is_watched():
    """Discovery settles after 3 steps on the roots it found; fit() on a new model then adds it."""
    torch.manual_seed(0)
    first = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    with torchdoctor.watch(print_report=False) as outer:
        _plain_training(first, torch.optim.SGD(first.parameters(), lr=0.01), steps=5)
        second = nn.Linear(4, 1)
        x, y = torch.randn(64, 4), torch.randn(64, 1)
        result = torchdoctor.fit(second, DataLoader(TensorDataset(x, y), batch_size=16),
                                 torch.optim.SGD(second.parameters(), lr=0.01), nn.MSELoss(), print_report=False)
    assert result.report is not None
    assert [m.name for m in outer.report.timeline.models] == ["Sequential", "Linear"]


def test_the_real_cli_runs_a_script_that_uses_watch(write_script, tmp_path):
    path = write_script(WITH_BLOCK)
    proc = cli("run", str(path), str(tmp_path / "seen.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "already active" not in proc.stderr and "already active" not in proc.stdout
    assert "script_error" not in proc.stdout
    assert (proc.stdout + proc.stderr).count("healthy: 36 steps") == 1  # one report, the outer doctor's
    assert json.loads((tmp_path / "seen.json").read_text())["steps"] == STEPS
