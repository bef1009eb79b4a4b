"""`torchdoctor fix`: real runs of tiny scripts, the fix applied from outside, the file untouched."""

from __future__ import annotations

import json

import torch

from tests.conftest import cli
from torchdoctor.repair import intervention

DIVERGES = """
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(256, 8)
y = x @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
for step in range(60):
    i = torch.randint(0, 256, (32,))
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x[i]), y[i])
    loss.backward()
    optimizer.step()
"""

HEALTHY = DIVERGES.replace("lr=5.0", "lr=0.05")


def test_fix_heals_a_diverging_run_without_editing_the_script(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(DIVERGES)
    before = script.read_bytes()
    out = tmp_path / "out.json"
    result = cli("fix", "--json", str(out), "train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["attempts"][0]["fix"] == "lower_learning_rate"
    assert data["attempts"][0]["params"]["lr"] < 5.0
    assert data["healed"] is True and data["attempts"][-1]["healthy_after"] is True
    assert data["attempts"][-1]["findings_after"] == []
    assert "-optimizer = torch.optim.SGD(model.parameters(), lr=5.0)" in data["patch"]
    new_lr = data["attempts"][-1]["params"]["lr"]
    assert f"+optimizer = torch.optim.SGD(model.parameters(), lr={new_lr:g})" in data["patch"]
    assert data["patch"].startswith("--- a/train.py\n+++ b/train.py\n")
    assert script.read_bytes() == before
    assert "healed" in result.stderr and "last loss" in result.stderr


def test_fix_on_a_healthy_script_changes_nothing(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(HEALTHY)
    out = tmp_path / "out.json"
    result = cli("fix", "--json", str(out), str(script))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == {"attempts": [], "healed": True, "patch": ""}
    assert "nothing to fix" in result.stderr


def test_fix_of_a_missing_script_is_bad_input(tmp_path):
    result = cli("fix", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr


def test_lower_learning_rate_scales_the_optimizers_and_is_removed_after():
    model = torch.nn.Linear(2, 1)
    with intervention("lower_learning_rate", {"lr": 0.01, "current_lr": 1.0}):
        first = torch.optim.SGD(model.parameters(), lr=1.0)
        second = torch.optim.Adam(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(first, step_size=1)
    assert first.param_groups[0]["lr"] == 0.01 and scheduler.base_lrs == [0.01]
    assert abs(second.param_groups[0]["lr"] - 0.001) < 1e-12
    assert torch.optim.SGD(model.parameters(), lr=1.0).param_groups[0]["lr"] == 1.0


def test_clip_gradients_clips_before_each_step_and_is_removed_after():
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def grad_norm() -> float:
        optimizer.zero_grad()
        (1000 * model(torch.ones(8, 4))).sum().backward()
        optimizer.step()
        return float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())

    with intervention("clip_gradients", {"max_norm": 1.0}):
        assert abs(grad_norm() - 1.0) < 1e-4
    assert grad_norm() > 100


VALIDATES_IN_TRAIN_MODE = """
import torch
from torch import nn

torch.manual_seed(0)
x, y = torch.randn(320, 8), torch.randint(0, 3, (320,))
model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(4):
    for i in range(0, 256, 32):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
        optimizer.step()
    with torch.no_grad():
        val = nn.functional.cross_entropy(model(x[256:]), y[256:]).item()
"""


def test_fix_puts_eval_around_the_validation_and_shows_the_curves(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(VALIDATES_IN_TRAIN_MODE)
    out = tmp_path / "out.json"
    result = cli("fix", "--json", str(out), "train.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [a["fix"] for a in data["attempts"]] == ["call_eval"] and data["healed"] is True
    assert "+    model.eval()\n     with torch.no_grad():" in data["patch"]
    curves = [line for line in result.stderr.splitlines() if line.startswith(("loss curve", "validation curve"))]
    assert len(curves) == 2 and all(any(bar in line for bar in "▁▂▃▄▅▆▇█") for line in curves)


def test_fix_reads_the_config_it_is_given_and_runs_modules(tmp_path):
    script = tmp_path / "trainmod.py"
    script.write_text(DIVERGES)
    config = tmp_path / "other.toml"
    config.write_text('[tool.torchdoctor]\ndisable = ["divergence", "exploding_gradients", "nonfinite_loss",'
                      ' "nonfinite_gradient", "loss_plateau", "dead_units"]\n')
    out = tmp_path / "out.json"
    result = cli("fix", "--config", str(config), "--json", str(out), "-m", "trainmod", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # every finding of this run switched off: nothing to fix
    assert json.loads(out.read_text())["attempts"] == []
    result = cli("fix", "--config", str(tmp_path / "missing.toml"), "trainmod.py", cwd=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_fix_checkpoints_the_blocks_when_a_step_does_not_fit_the_budget(tmp_path):
    from tests.conftest import ROOT

    out = tmp_path / "out.json"
    result = cli("fix", "--memory-budget", "96MiB", "--json", str(out), str(ROOT / "examples" / "memory_budget.py"),
                 "--steps", "2")
    assert result.returncode == 0, result.stderr
    attempts = json.loads(out.read_text())["attempts"]
    # the batch size is no DataLoader's in this script (nothing to change from outside): undone, then
    # checkpointing the blocks the rule names makes the step fit
    assert [(a["fix"], a["kept"]) for a in attempts] == [("reduce_batch_size", False), ("gradient_checkpointing", True)]
    assert attempts[-1]["healthy_after"] and attempts[-1]["params"]["modules"]
