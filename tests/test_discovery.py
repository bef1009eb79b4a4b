"""Discovery in `run` mode: unchanged, realistic scripts; torchdoctor must find the models, the
loss, the optimizer steps and the epochs, and leave the script's behaviour untouched."""

from __future__ import annotations

import copy
import json
import math
import runpy
import sys
import textwrap

import pytest
import torch
from torch.nn.modules import module as module_mod
from torch.utils.data import DataLoader

from tests.conftest import SCRIPTS, run_script
from torchdoctor.render import to_text

COMMON = """
import argparse, json, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
"""


def script(write_script, body: str, name: str = "train.py"):
    return write_script(COMMON + textwrap.dedent(body), name)


def test_functional_loss_values_are_recorded_exactly(write_script, tmp_path):
    path = script(write_script, """
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for step in range(7):
            x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        json.dump(losses, open(sys.argv[1], "w"))
    """)
    out = tmp_path / "losses.json"
    result = run_script(path, str(out))
    recorded = [r.loss for r in result.report.timeline.steps]
    assert recorded == json.loads(out.read_text())
    assert [r.step for r in result.report.timeline.steps] == list(range(7))
    assert result.report.timeline.optimizers == ["Adam"]
    assert [layer.name for layer in result.report.timeline.layers] == ["0", "2"]


def test_loss_module_and_custom_nested_model(write_script):
    path = script(write_script, """
        class Block(nn.Module):
            def __init__(self, c):
                super().__init__()
                self.conv = nn.Conv2d(c, c, 3, padding=1)
                self.bn = nn.BatchNorm2d(c)
            def forward(self, x):
                return F.relu(self.bn(self.conv(x))) + x

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Conv2d(1, 4, 3, padding=1)
                self.blocks = nn.Sequential(Block(4), Block(4))
                self.head = nn.Linear(4, 2)
            def forward(self, x):
                h = self.blocks(F.relu(self.stem(x)))
                return self.head(h.mean(dim=(2, 3)))

        def main():
            model, criterion = Net(), nn.CrossEntropyLoss()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(4):
                opt.zero_grad()
                criterion(model(torch.randn(8, 1, 8, 8)), torch.randint(0, 2, (8,))).backward()
                opt.step()

        if __name__ == "__main__":
            main()
    """)
    result = run_script(path)
    tl = result.report.timeline
    assert [m.name for m in tl.models] == ["Net"], "the loss module is not a model"
    assert len(tl.steps) == 4 and all(r.loss is not None for r in tl.steps)
    names = [layer.name for layer in tl.layers]
    assert names == ["stem", "blocks.0.conv", "blocks.0.bn", "blocks.1.conv", "blocks.1.bn", "head"]
    assert [layer.kind for layer in tl.layers] == ["weight", "weight", "norm", "weight", "norm", "weight"]
    assert tl.models[0].module_types["blocks.1.bn"] == "BatchNorm2d"


def test_torchvision_resnet_layers_in_forward_order():
    result = run_script(SCRIPTS / "resnet_cifar.py", "--steps", "2")
    tl = result.report.timeline
    assert tl.models[0].name == "ResNet"
    assert tl.layers[0].name == "conv1" and tl.layers[1].name == "bn1" and tl.layers[-1].name == "fc"
    assert tl.layers[2].name == "layer1.0.conv1"
    assert len(tl.steps) == 2 and all(r.grad_norm and r.grad_norm > 0 for r in tl.steps)


def test_argparse_main_guard_file_sibling_import_and_chdir(write_script, tmp_path):
    write_script("SCALE = 3\n", "helpers_for_train.py")
    path = script(write_script, """
        import os
        import helpers_for_train

        def main():
            parser = argparse.ArgumentParser()
            parser.add_argument("--epochs", type=int, default=1)
            parser.add_argument("--out")
            args = parser.parse_args()
            os.chdir("/")
            here = os.path.dirname(os.path.abspath(__file__))
            model = nn.Linear(2, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            for _ in range(args.epochs * helpers_for_train.SCALE):
                opt.zero_grad(); model(torch.randn(4, 2)).pow(2).mean().backward(); opt.step()
            json.dump({"argv0": sys.argv[0], "here": here, "name": __name__, "path0": sys.path[0]},
                      open(args.out, "w"))

        if __name__ == "__main__":
            main()
    """)
    out = tmp_path / "seen.json"
    result = run_script(path, "--epochs", "2", "--out", str(out))
    seen = json.loads(out.read_text())
    assert seen == {"argv0": str(path), "here": str(tmp_path), "name": "__main__", "path0": str(tmp_path)}
    assert len(result.report.timeline.steps) == 6


def test_module_mode_for_a_module_and_a_package(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = COMMON + textwrap.dedent("""
        from . import settings
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(settings.STEPS):
            opt.zero_grad(); model(torch.randn(4, 3)).pow(2).mean().backward(); opt.step()
        print(__name__, __spec__.name, sys.argv[1:])
    """)
    (pkg / "settings.py").write_text("STEPS = 3\n")
    (pkg / "train.py").write_text(body)
    (pkg / "__main__.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_script("mypkg.train", "--flag", module=True)
    assert result.status == 0 and len(result.report.timeline.steps) == 3
    result = run_script("mypkg", module=True)
    assert result.status == 0 and len(result.report.timeline.steps) == 3


def test_epochs_from_loader_reiteration_validation_loader_and_workers(write_script):
    path = script(write_script, """
        x = torch.randn(64, 4); y = (x.sum(1) > 0).long()
        train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16, shuffle=True, num_workers=2)
        val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=8)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(3):
            model.train()
            for xb, yb in train:
                opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            model.eval()
            with torch.no_grad():
                for xb, yb in val:
                    model(xb)
    """)
    result = run_script(path)
    tl = result.report.timeline
    assert len(tl.steps) == 9 and tl.run.epochs == 3
    assert [r.epoch for r in tl.steps] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_gradient_accumulation_counts_optimizer_steps(write_script):
    path = script(write_script, """
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        opt.zero_grad()
        for i in range(12):
            (model(torch.randn(4, 4)).pow(2).mean() / 4).backward()
            if (i + 1) % 4 == 0:
                opt.step(); opt.zero_grad()
    """)
    tl = run_script(path).report.timeline
    assert len(tl.steps) == 3 and tl.backward_calls == 12
    assert all(r.loss is not None for r in tl.steps)


def test_two_models_two_optimizers(write_script):
    path = script(write_script, """
        G = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        D = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
        bce = nn.BCEWithLogitsLoss()
        for _ in range(5):
            real, z = torch.randn(16, 2) + 3, torch.randn(16, 2)
            opt_d.zero_grad()
            d_loss = bce(D(real), torch.ones(16, 1)) + bce(D(G(z).detach()), torch.zeros(16, 1))
            d_loss.backward(); opt_d.step()
            opt_g.zero_grad()
            g_loss = bce(D(G(z)), torch.ones(16, 1))
            g_loss.backward(); opt_g.step()
    """)
    result = run_script(path)
    tl = result.report.timeline
    assert len(tl.models) == 2 and len(tl.optimizers) == 2
    assert len(tl.steps) == 5
    assert result.report.internal_errors == []


def test_keyword_arguments_reach_the_replay(write_script):
    path = script(write_script, """
        class Masked(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(4, 4)
                self.out = nn.Linear(4, 1)
            def forward(self, x, *, scale):
                return self.out(torch.log(self.proj(x).relu() * scale + 1))

        model = Masked()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(4):
            opt.zero_grad()
            out = model(torch.randn(8, 4), scale=-1e9 if step == 2 else 1.0)
            F.mse_loss(out, torch.zeros(8, 1)).backward()
            opt.step()
    """)
    result = run_script(path)
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 2
    assert finding.evidence["origin"] == "Masked"  # functional log() at the root level of forward


def test_no_optimizer_is_not_a_crash(write_script):
    path = script(write_script, """
        w = torch.zeros(3, requires_grad=True)
        for _ in range(3):
            loss = ((torch.randn(5, 3) @ w) - 1).pow(2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad; w.grad = None
    """)
    result = run_script(path)
    assert result.status == 0 and result.report.timeline.steps == []
    assert result.report.timeline.backward_calls == 3
    assert "nothing to diagnose" in to_text(result.report)


SEEDED = """
import json, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
losses = []
for step in range(10):
    x, target = torch.randn(12, 6), torch.ones(12, 1)
    if step == 4:
        target[0] = 1e20  # the squared error overflows: the loss goes Inf and a replay happens
    opt.zero_grad()
    loss = F.mse_loss(model(x), target)
    loss.backward()
    if torch.isfinite(loss):
        opt.step()
    losses.append(loss.item())
torch.save({"state": model.state_dict(), "rng": torch.get_rng_state(), "losses": losses}, sys.argv[1])
"""


def test_training_numbers_are_bit_identical_with_and_without_torchdoctor(write_script, tmp_path):
    path = write_script(SEEDED, "seeded.py")
    plain_out, doctor_out = tmp_path / "plain.pt", tmp_path / "doctor.pt"
    saved_argv = sys.argv
    try:
        sys.argv = [str(path), str(plain_out)]
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved_argv
    result = run_script(path, str(doctor_out))
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.evidence["origin"] == "loss", "the replay path was exercised"
    assert finding.step == 4
    plain, doctored = torch.load(plain_out), torch.load(doctor_out)
    assert [math.isnan(v) or v for v in plain["losses"]] == [math.isnan(v) or v for v in doctored["losses"]]
    assert torch.equal(plain["rng"], doctored["rng"])
    for key, value in plain["state"].items():
        assert torch.equal(value, doctored["state"][key]), key


def test_exit_status_passes_through_and_hooks_are_removed(write_script):
    backward, loader_iter = torch.autograd.backward, DataLoader.__iter__
    path = script(write_script, """
        model = nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(2):
            opt.zero_grad(); model(torch.randn(3, 2)).sum().backward(); opt.step()
        sys.exit(3)
    """)
    result = run_script(path)
    assert result.status == 3 and len(result.report.timeline.steps) == 2
    crash = script(write_script, """
        model = nn.Linear(2, 1)
        model(torch.randn(3, 5))
    """, "crash.py")
    result = run_script(crash)
    assert result.status == 1
    assert "mat1 and mat2 shapes cannot be multiplied" in result.report.timeline.run.script_exception
    assert torch.autograd.backward is backward and DataLoader.__iter__ is loader_iter
    assert not module_mod._global_forward_hooks and not module_mod._global_forward_pre_hooks
    from torch.optim import optimizer as optimizer_mod
    assert not optimizer_mod._global_optimizer_pre_hooks and not optimizer_mod._global_optimizer_post_hooks


@pytest.mark.parametrize("mode", ["eval", "no_grad"])
def test_inference_only_scripts_make_no_steps(write_script, mode):
    path = script(write_script, f"""
        model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        model.eval()
        with torch.{'inference_mode' if mode == 'eval' else 'no_grad'}():
            for _ in range(3):
                model(torch.randn(2, 4))
    """)
    result = run_script(path)
    assert result.status == 0 and result.report.timeline.steps == [] and result.report.findings == []


def test_deepcopy_and_torch_save_of_the_model_still_work(write_script):
    path = script(write_script, """
        import copy, io
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        best = None
        for step in range(3):
            opt.zero_grad(); model(torch.randn(5, 3)).pow(2).mean().backward(); opt.step()
            best = copy.deepcopy(model)
            torch.save(model, io.BytesIO())
        assert not best._forward_pre_hooks and not best._forward_hooks
    """)
    result = run_script(path)
    assert result.status == 0, result.report.timeline.run.script_exception
    assert len(result.report.timeline.steps) == 3


def test_discovery_ends_after_the_first_steps_and_leaves_nothing_behind():
    """Global module hooks slow every module call: after the first steps only the roots found are
    watched (through their classes, so nothing travels with the modules), and a sampled memory
    breakdown still sees every layer."""
    from torchdoctor.session import Doctor

    nn = torch.nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = nn.CrossEntropyLoss()
    global_hooks = []
    # One batch it can learn (random labels on fresh noise would rightly stay at chance).
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with Doctor(print_report=False) as doctor:
        for _ in range(52):
            opt.zero_grad()
            criterion(model(x), y).backward()
            opt.step()
            global_hooks.append(len(module_mod._global_forward_pre_hooks))
        copied = copy.deepcopy(model)
    assert global_hooks[0] == 1 and global_hooks[-1] == 0
    assert not copied._forward_pre_hooks and not copied._forward_hooks
    assert "__call__" not in nn.Sequential.__dict__ and "__call__" not in nn.CrossEntropyLoss.__dict__
    profile = doctor.report.timeline.memory.profile
    assert profile.step == 50 and any(m.activations > 0 for m in profile.modules if m.name == "1")
    assert len(doctor.report.timeline.steps) == 52 and doctor.report.healthy
