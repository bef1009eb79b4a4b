"""Mixed precision on CPU: bfloat16 autocast runs clean; a GradScaler that skips steps while it
calibrates is by design; one whose scale collapses because the gradients are NaN is amp_overflow."""

from __future__ import annotations

AMP_SCRIPT = """
import sys
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                      nn.Linear(8 * 8 * 8, 1))
mode, init_scale = sys.argv[1], float(sys.argv[2])
opt = torch.optim.SGD(model.parameters(), lr=0.0001 if mode == "big-loss" else 0.01, momentum=0.9)
scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, enabled=mode != "bf16-only")
x = torch.randn(64, 1, 8, 8)
y = x.mean((1, 2, 3)).unsqueeze(1) * 4
for step in range(60):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.mse_loss(model(x).float(), y)
    if mode == "big-loss":  # scaled by 3e38 it overflows: the scaler must back off first
        loss = loss * 100
    if mode == "nan-grads":  # sqrt'(0) = inf, times 0: NaN in every gradient, the loss stays finite
        loss = loss + 0.0 * torch.sqrt(model[0].weight.abs().sum() * 0)
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
"""


def test_bfloat16_autocast_without_a_scaler_is_clean(run, write_script):
    result = run(write_script(AMP_SCRIPT), "bf16-only", "1")
    assert result.report.healthy, result.codes
    assert len(result.report.timeline.steps) == 60
    assert "bfloat16" in result.report.timeline.memory.profile.activation_dtypes


def test_a_scaler_calibrating_from_a_huge_scale_skips_steps_by_design(run, write_script):
    result = run(write_script(AMP_SCRIPT), "big-loss", "3e38")
    amp = result.report.timeline.amp
    assert amp.skipped >= 1 and amp.updates == 60  # it skipped while calibrating
    assert len(result.report.timeline.steps) == 60 - amp.skipped
    assert result.report.healthy, result.codes  # neither amp_overflow nor nonfinite_gradient


def test_a_scale_that_collapses_on_nan_gradients_is_amp_overflow(run, write_script):
    result = run(write_script(AMP_SCRIPT), "nan-grads", "65536")
    finding = result.report.by_code("amp_overflow")
    assert finding is not None, result.codes
    assert finding.evidence["skipped_steps"] == finding.evidence["updates"] == 60
    assert finding.evidence["lowest_scale"] < 1
    assert [f.action for f in finding.fixes][:2] == ["find_nonfinite_gradient", "mixed_precision"]
    assert "nonfinite_gradient" not in result.codes
