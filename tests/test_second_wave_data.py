"""Issue 18, end to end: real tiny trainings under torchdoctor for double_sigmoid (and the BCELoss
crash on logits), amp_clip_before_unscale and data_leakage, each beside its healthy twin."""

from __future__ import annotations

import torch

from tests.calibration.manifest import HERE
from tests.conftest import run_script

FAULTY = HERE / "faulty"
HEALTHY = HERE / "healthy"


def test_a_final_sigmoid_into_bce_with_logits_is_found():
    run = run_script(FAULTY / "double_sigmoid_bce.py")
    finding = run.report.by_code("double_sigmoid")
    assert finding is not None
    assert finding.where == "3" and finding.evidence["module"] == "3"
    assert finding.evidence["probability_samples"] == finding.evidence["samples"] >= 5
    assert 0.0 <= finding.evidence["min"] and finding.evidence["max"] <= 1.0


def test_torch_sigmoid_in_the_forward_into_bce_with_logits_is_found():
    run = run_script(FAULTY / "double_sigmoid_bce.py", "--functional")
    finding = run.report.by_code("double_sigmoid")
    assert finding is not None
    assert finding.where is None


def test_raw_logits_into_bce_with_logits_are_clean():
    assert "double_sigmoid" not in run_script(FAULTY / "double_sigmoid_bce.py", "--fixed").codes


def test_bce_loss_on_sigmoid_outputs_and_multilabel_logits_are_clean():
    for script in ("bce_on_sigmoid.py", "multilabel_bce.py"):
        run = run_script(HEALTHY / script)
        assert "double_sigmoid" not in run.codes, script


BCE_ON_LOGITS = """
import torch
import torch.nn as nn
torch.manual_seed(0)
x = torch.randn(256, 8)
y = (x[:, 0] > 0).float().unsqueeze(1)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
criterion = nn.BCELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(0, 256, 32):
    optimizer.zero_grad()
    loss = criterion(model(x[i:i + 32]), y[i:i + 32])
    loss.backward()
    optimizer.step()
"""


def test_logits_into_bce_loss_crash_is_explained_with_bce_with_logits(write_script):
    run = run_script(write_script(BCE_ON_LOGITS))
    assert run.status != 0
    finding = run.report.by_code("script_error")
    assert finding is not None
    assert finding.evidence["kind"] == "probabilities_expected"
    assert "between 0 and 1" in finding.evidence["message"]
    fix = finding.fixes[0]
    assert fix.action == "fix_loss_input" and fix.params == {"loss": "binary_cross_entropy_with_logits"}
    assert "BCEWithLogitsLoss" in fix.snippet
    assert "double_sigmoid" not in run.codes


def test_clip_before_unscale_is_found_with_the_scale():
    run = run_script(FAULTY / "amp_clip_before_unscale.py")
    finding = run.report.by_code("amp_clip_before_unscale")
    assert finding is not None
    ev = finding.evidence
    assert ev["scaled_clips"] == ev["clips"] == 128
    assert ev["scale"] == 65536.0 and ev["max_norm"] == 1.0
    assert ev["clip_norm"] > 1e4 and ev["effective_max_norm"] == 1.0 / 65536
    assert torch.nn.utils.clip_grad_norm_ is torch.nn.utils.clip_grad.clip_grad_norm_
    assert not hasattr(torch.nn.utils.clip_grad_norm_, "__torchdoctor_original__")  # the probe is removed


def test_unscale_then_clip_is_clean():
    for args in (("--fixed",), ()):
        script = FAULTY / "amp_clip_before_unscale.py" if args else HEALTHY / "amp_gradscaler_cpu.py"
        run = run_script(script, *args)
        assert "amp_clip_before_unscale" not in run.codes, script
        assert run.report.timeline.amp.clips > 0 and run.report.timeline.amp.scaled_clips == 0


CLIP_WITHOUT_SCALER = """
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)
x, y = torch.randn(512, 8), torch.randint(0, 3, (512,))
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(0, 512, 32):
    optimizer.zero_grad()
    F.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
"""


def test_a_clip_without_a_scaler_is_clean(write_script):
    run = run_script(write_script(CLIP_WITHOUT_SCALER))
    assert run.status == 0 and "amp_clip_before_unscale" not in run.codes
    assert run.report.timeline.amp.clips == 0


def test_a_validation_split_drawn_again_from_the_training_data_is_found():
    run = run_script(FAULTY / "data_leakage_resplit.py")
    finding = run.report.by_code("data_leakage")
    assert finding is not None
    ev = finding.evidence
    assert ev["val_samples_seen"] > 100 and ev["train_set_size"] == 2000
    assert 0.6 < ev["estimated_share"] <= 1.0  # the true share is 0.8


def test_one_split_into_disjoint_sets_is_clean():
    run = run_script(FAULTY / "data_leakage_resplit.py", "--fixed")
    assert "data_leakage" not in run.codes
    leak = run.report.timeline.habits.leakage
    assert leak["val_rows"] > 0 and leak["val_seen"] == 0


TENSORS = """
import sys
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)
x, y = torch.randn(1024, 16), torch.randint(0, 4, (1024,))
if "--leak" in sys.argv:
    x_val, y_val = x[:256], y[:256]  # validation rows taken from the training tensors
else:
    x_val, y_val = torch.randn(256, 16), torch.randint(0, 4, (256,))  # a different random draw
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
for epoch in range(3):
    for i in range(0, 1024, 32):
        optimizer.zero_grad()
        F.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
        optimizer.step()
    with torch.no_grad():
        F.cross_entropy(model(x_val), y_val)
"""


def test_validation_tensors_sliced_from_the_training_tensors_are_found_and_a_fresh_draw_is_not(write_script):
    path = write_script(TENSORS)
    leaked = run_script(path, "--leak")
    assert "data_leakage" in leaked.codes
    assert "data_leakage" not in run_script(path).codes


def test_an_evaluation_over_the_training_loader_is_no_leak(write_script):
    source = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
loader = DataLoader(TensorDataset(torch.randn(640, 12), torch.randint(0, 3, (640,))), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(3):
    for xb, yb in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    with torch.no_grad():  # training accuracy, measured over the training loader
        correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in loader)
"""
    run = run_script(write_script(source))
    assert run.status == 0 and "data_leakage" not in run.codes
