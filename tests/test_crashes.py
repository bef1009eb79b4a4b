"""Crash explanations: real scripts that die of the classic mistakes, each explained with the module,
the shapes and the fix; and runs that end otherwise stay free of script_error."""

from __future__ import annotations

import pytest

from torchdoctor import Severity

HEADER = """
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
"""

LOOP = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(3):
    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

CASES = {
    "conv_into_linear_without_flatten": (
        "model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Linear(8 * 8 * 8, 10))\n"
        "x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))\ncriterion = nn.CrossEntropyLoss()\n",
        "linear_in_features", "3", ("add_flatten", {"in_features": 512}),
    ),
    "linear_with_the_wrong_in_features": (
        "model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(100, 10))\n"
        "x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))\ncriterion = nn.CrossEntropyLoss()\n",
        "linear_in_features", "2", ("fix_in_features", {"in_features": 2048}),
    ),
    "grey_images_into_an_rgb_conv": (
        "model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(10))\n"
        "x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))\ncriterion = nn.CrossEntropyLoss()\n",
        "conv_in_channels", "0", ("fix_in_channels", {"in_channels": 1}),
    ),
    "float64_numpy_inputs": (
        "model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n"
        "x, y = torch.from_numpy(np.random.randn(16, 4)), torch.randint(0, 2, (16,))\n"
        "criterion = nn.CrossEntropyLoss()\n",
        "dtype_mismatch", "0", ("convert_input_dtype", {"dtype": "float32"}),
    ),
    "labels_from_one_to_c": (
        "model = nn.Linear(4, 10)\nx, y = torch.randn(64, 4), torch.arange(64) % 10 + 1\n"
        "criterion = nn.CrossEntropyLoss()\n",
        "target_out_of_range", None, ("shift_labels", {"shift": -1}),
    ),
    "float_class_labels": (
        "model = nn.Linear(4, 3)\nx, y = torch.randn(8, 4), torch.randint(0, 3, (8,)).float()\n"
        "criterion = nn.CrossEntropyLoss()\n",
        "target_dtype_long", None, ("fix_target_dtype", {"dtype": "int64"}),
    ),
    "binary_output_n_by_1_and_target_n": (
        "model = nn.Linear(4, 1)\nx, y = torch.randn(8, 4), torch.randint(0, 2, (8,)).float()\n"
        "criterion = nn.BCEWithLogitsLoss()\n",
        "target_shape", None, ("fix_target_shape", {"output_shape": [8, 1], "target_shape": [8]}),
    ),
    "view_that_mixes_the_batch": (
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 16, 5)\n"
        "        self.fc = nn.Linear(16 * 5 * 5, 10)\n"
        "    def forward(self, x):\n"
        "        x = F.max_pool2d(F.relu(self.conv(x)), 2)\n"
        "        return self.fc(x.view(-1, 16 * 5 * 5))\n"
        "model = Net()\nx, y = torch.randn(25, 3, 12, 12), torch.randint(0, 10, (25,))\n"
        "criterion = nn.CrossEntropyLoss()\n",
        "batch_size_mismatch", None, ("fix_reshape", {"output_shape": [16, 10], "target_shape": [25]}),
    ),
    "token_index_past_the_vocabulary": (
        "model = nn.Sequential(nn.Embedding(100, 8), nn.Flatten(), nn.Linear(8 * 6, 2))\n"
        "x, y = torch.randint(0, 120, (4, 6)), torch.randint(0, 2, (4,))\ncriterion = nn.CrossEntropyLoss()\n",
        "embedding_index", "0", ("fix_num_embeddings", {}),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_classic_crash_is_explained_with_its_fix(run, write_script, case):
    setup, kind, where, (action, params) = CASES[case]
    result = run(write_script(HEADER + setup + LOOP))
    assert result.status == 1
    finding = result.report.by_code("script_error")
    assert finding is not None, result.codes
    assert finding.severity is Severity.CRITICAL and finding.step == 0
    assert finding.evidence["kind"] == kind, finding.evidence
    assert finding.where == where
    fix = finding.fixes[0]
    assert fix.action == action
    for key, value in params.items():
        assert fix.params[key] == value, (key, fix.params)
    assert fix.snippet or fix.text


def test_the_embedding_fix_sizes_the_vocabulary_from_the_indices_seen(run, write_script):
    result = run(write_script(HEADER + CASES["token_index_past_the_vocabulary"][0] + LOOP))
    fix = result.report.by_code("script_error").fixes[0]
    assert 100 < fix.params["num_embeddings"] <= 120


def test_an_unknown_error_is_still_reported_with_where_it_happened(run, write_script):
    result = run(write_script(HEADER + "model = nn.Linear(4, 2)\nx, y = torch.randn(8, 4), torch.randint(0, 2, (8,))\n"
                              "criterion = nn.CrossEntropyLoss()\n" + LOOP + "raise ValueError('bad config')\n"))
    finding = result.report.by_code("script_error")
    assert result.status == 1 and finding.evidence["kind"] == "other"
    assert "ValueError: bad config" in finding.title and finding.step == 3


@pytest.mark.parametrize("ending", ["import sys\nsys.exit(3)\n", "raise KeyboardInterrupt\n", ""])
def test_a_run_that_exits_or_is_interrupted_is_no_script_error(run, write_script, ending):
    result = run(write_script(HEADER + "model = nn.Linear(4, 2)\nx, y = torch.randn(8, 4), torch.randint(0, 2, (8,))\n"
                              "criterion = nn.CrossEntropyLoss()\n" + LOOP + ending))
    assert "script_error" not in result.codes


def test_the_shape_mismatch_example_and_its_fixed_twin(run):
    from tests.conftest import EXAMPLES

    faulty = run(EXAMPLES / "shape_mismatch.py")
    fix = faulty.report.by_code("script_error").fixes[0]
    assert faulty.status == 1 and fix.action == "fix_in_features" and fix.params["in_features"] == 32 * 8 * 8
    fixed = run(EXAMPLES / "shape_mismatch.py", "--fixed")
    assert fixed.status == 0 and fixed.report.healthy, fixed.codes


def test_tensors_on_different_devices_are_explained(run, write_script):
    """No GPU here: a meta-device batch into a CPU model raises PyTorch's device error the same way."""
    result = run(write_script(HEADER + "model = nn.Linear(4, 2)\nx, y = torch.randn(8, 4, device='meta'), "
                              "torch.randint(0, 2, (8,))\ncriterion = nn.CrossEntropyLoss()\n" + LOOP))
    finding = result.report.by_code("script_error")
    assert finding.evidence["kind"] == "device_mismatch" and finding.evidence["devices"] == ["cpu", "meta"]
    assert finding.fixes[0].action == "move_to_device" and "model.to(device)" in finding.fixes[0].snippet


def test_the_cuda_device_message_is_classified():
    """The probe records the facts of a real exception; the rule names the mistake."""
    from torchdoctor.probes.crash import exception_facts
    from torchdoctor.rules._failures import classify

    error = RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                         "cuda:0 and cpu! (when checking argument for argument mat1 in method wrapper_CUDA_addmm)")
    info = classify({**exception_facts(error), "phase": "forward", "module": "fc", "module_type": "Linear"})
    assert info["kind"] == "device_mismatch" and info["devices"] == ["cpu", "cuda:0"]


def test_a_crash_after_discovery_is_still_traced_to_the_layer_that_raised(run, write_script):
    """After the first steps only the model itself is watched (no global hooks): the layer that
    raised, and what it was given, come from the traceback."""
    script = HEADER + (
        "model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))\n"
        "criterion = nn.CrossEntropyLoss()\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.01)\n"
        "for step in range(8):\n"
        "    side = 16 if step < 5 else 8  # a last batch at another resolution\n"
        "    x, y = torch.randn(4, 3, side, side), torch.randint(0, 10, (4,))\n"
        "    optimizer.zero_grad()\n"
        "    criterion(model(x), y).backward()\n"
        "    optimizer.step()\n"
    )
    result = run(write_script(script))
    finding = result.report.by_code("script_error")
    assert result.status == 1 and finding.step == 5
    assert finding.where == "3" and finding.evidence["kind"] == "linear_in_features", finding.evidence
    assert finding.evidence["inputs"][0]["shape"] == [4, 512]
