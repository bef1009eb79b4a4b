"""Discovery in `run` mode on real, unchanged training scripts (tests/scripts/discovery/).

Every diagnosis stands on this: which models, layers, optimizers, steps, losses and epochs
torchdoctor found by itself, that it ran the script the way `python` would, that a NaN is traced
to the right module, and that the user's training is exactly what it would have been.
"""

from __future__ import annotations

import json
import math
import runpy
import sys

import pytest
import torch
import torch.nn.modules.module as module_globals
import torch.optim.optimizer as optimizer_globals
import torchvision
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _BaseDataLoaderIter

from tests.conftest import SCRIPTS, run_script
from torchdoctor.recorder import readback

D = SCRIPTS / "discovery"


def global_hook_state() -> dict[str, object]:
    return {
        "forward_hooks": dict(module_globals._global_forward_hooks),
        "forward_pre_hooks": dict(module_globals._global_forward_pre_hooks),
        "forward_hooks_with_kwargs": dict(module_globals._global_forward_hooks_with_kwargs),
        "forward_hooks_always_called": dict(module_globals._global_forward_hooks_always_called),
        "optimizer_pre_hooks": dict(optimizer_globals._global_optimizer_pre_hooks),
        "optimizer_post_hooks": dict(optimizer_globals._global_optimizer_post_hooks),
        "backward": torch.autograd.backward,
        "loader_iter": DataLoader.__iter__,
        "loader_next": _BaseDataLoaderIter.__next__,
        "optimizer_zero_grad": torch.optim.Optimizer.zero_grad,
        "module_zero_grad": torch.nn.Module.zero_grad,
        "scaler_scale": torch.amp.GradScaler.scale,
    }


@pytest.fixture(autouse=True)
def hooks_are_removed():
    """After every run, PyTorch is exactly as torchdoctor found it (and nothing was left
    on the user's modules)."""
    before = global_hook_state()
    assert not before["forward_hooks"] and not before["forward_pre_hooks"]
    yield
    assert global_hook_state() == before


def layer_names(run) -> list[str]:
    return [layer.name for layer in run.report.timeline.layers]


def own_param_modules(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]


def nonfinite_event(run):
    events = run.report.timeline.events_of("nonfinite_loss")
    assert len(events) == 1, run.report.timeline.events
    return events[0]


def run_plain(path, *args: str) -> None:
    """The script as `python path args` runs it, without torchdoctor (same process, so the same
    torch build and thread settings)."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


# -- losses, models, layers -------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["functional", "module", "mse"])
def test_the_loss_of_every_step_is_what_the_script_computed(tmp_path, loss):
    out = tmp_path / "losses.json"
    run = run_script(D / "losses.py", "--loss", loss, "--out", str(out))
    assert run.status == 0, run.report.timeline.run.script_exception
    tl = run.report.timeline
    expected = json.loads(out.read_text())
    assert [s.step for s in tl.steps] == list(range(6))
    assert [s.loss for s in tl.steps] == expected  # the same float32 values, exactly
    assert tl.backward_calls == 6 and tl.optimizers == ["Adam"]
    assert all(s.grad_norm is not None and math.isfinite(s.grad_norm) for s in tl.steps)
    assert all(s.lr == pytest.approx(1e-2) for s in tl.steps)
    assert not tl.internal_errors


def test_custom_model_layers_are_dotted_paths_in_forward_order(tmp_path):
    run = run_script(D / "losses.py", "--out", str(tmp_path / "l.json"))
    tl = run.report.timeline
    assert [m.name for m in tl.models] == ["Net"], "the loss module is not a model"
    assert layer_names(run) == [
        "encoder.stem",
        "encoder.blocks.0.norm", "encoder.blocks.0.fc1", "encoder.blocks.0.fc2",
        "encoder.blocks.1.norm", "encoder.blocks.1.fc1", "encoder.blocks.1.fc2",
        "head",
    ]
    kinds = {layer.name: layer.kind for layer in tl.layers}
    assert kinds["encoder.blocks.0.norm"] == "norm" and kinds["head"] == "weight"
    assert tl.layers[1].params == ["encoder.blocks.0.norm.weight", "encoder.blocks.0.norm.bias"]
    types = tl.models[0].module_types
    assert types["encoder.blocks.1"] == "Block" and types["encoder.blocks.0.fc1"] == "Linear"
    # every step measured every layer
    assert all(len(s.layer_grad_norms) == len(tl.layers) and None not in s.layer_grad_norms for s in tl.steps)


def test_sequential_model(tmp_path):
    run = run_script(D / "sequential.py")
    tl = run.report.timeline
    assert [m.name for m in tl.models] == ["Sequential"]
    assert layer_names(run) == ["0.0", "0.2", "0.3", "2.0", "2.2"]
    assert [layer.type for layer in tl.layers] == ["Conv2d", "Conv2d", "BatchNorm2d", "Linear", "Linear"]
    assert len(tl.steps) == 4 and tl.steps[0].epoch is None and tl.run.epochs is None


def test_torchvision_resnet(tmp_path):
    run = run_script(D / "resnet.py")
    tl = run.report.timeline
    assert run.status == 0 and len(tl.steps) == 3
    assert [m.name for m in tl.models] == ["ResNet"]
    expected = own_param_modules(torchvision.models.resnet18(weights=None, num_classes=10))
    names = layer_names(run)
    assert names == expected and names[0] == "conv1" and names[-1] == "fc"
    assert "layer2.0.downsample.0" in names
    types = tl.models[0].module_types
    assert types["layer3.1.bn2"] == "BatchNorm2d" and types["layer1.0"] == "BasicBlock"
    order = list(types)
    # a block's ReLU is called twice; it sits where it was first called, before conv2
    assert order.index("layer1.0.bn1") < order.index("layer1.0.relu") < order.index("layer1.0.conv2")
    assert all(s.loss is not None and math.isfinite(s.loss) for s in tl.steps)


# -- running the script like python does ------------------------------------------------------

def test_argparse_main_guard_file_and_sibling_import(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "discovery_helper", raising=False)
    out = tmp_path / "seen.json"
    script = D / "options.py"
    run = run_script(script, "--epochs", "2", "--batch-size", "32", "--out", str(out))
    assert run.status == 0, run.report.timeline.run.script_exception
    seen = json.loads(out.read_text())
    assert seen["argv"] == [str(script), "--epochs", "2", "--batch-size", "32", "--out", str(out)]
    assert seen["name"] == "__main__" and seen["spec"] == "None"
    assert seen["file"] == str(script.resolve()) and seen["here"] == str(D.resolve())
    assert seen["path0"] == str(D.resolve())
    assert seen["prog"] == "options.py"
    tl = run.report.timeline
    assert tl.run.epochs == 2 and len(tl.steps) == 4  # 64 samples, batch 32: the options arrived
    assert tl.run.argv[1:] == ["--epochs", "2", "--batch-size", "32", "--out", str(out)]


def test_relative_script_path_and_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(D.parent)
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "seen.json"
    run = run_script("discovery/options.py", "--chdir", str(work), "--out", str(out))
    assert run.status == 0, run.report.timeline.run.script_exception
    seen = json.loads(out.read_text())
    assert seen["argv"][0] == "discovery/options.py", "argv[0] is the path as given, like python"
    assert seen["file"] == str((D / "options.py").resolve()) and seen["path0"] == str(D.resolve())
    assert seen["cwd"] == str(work) and (work / "written_after_chdir.txt").read_text() == "ok"
    assert len(run.report.timeline.steps) == 4 and run.report.timeline.run.epochs == 1


@pytest.fixture
def package_dir(monkeypatch):
    """`python -m` runs from the current directory: sys.path[0] is the cwd. A `torchdoctor`
    console script has its own bin folder there instead, so put something else first."""
    monkeypatch.chdir(D)
    monkeypatch.setattr(sys, "path", ["/nonexistent-console-script-dir", *sys.path[1:]])
    yield D
    for name in [n for n in sys.modules if n.startswith(("tdpkg_train", "tdpkg_main"))]:
        del sys.modules[name]


def test_module_in_a_package(tmp_path, package_dir):
    out = tmp_path / "seen.json"
    run = run_script("tdpkg_train.train", "--steps", "4", "--out", str(out), module=True)
    assert run.status == 0, run.report.timeline.run.script_exception
    seen = json.loads(out.read_text())
    assert seen["name"] == "__main__" and seen["package"] == "tdpkg_train"
    assert seen["spec_name"] == "tdpkg_train.train" and seen["path0"] == str(D)
    assert seen["argv"] == [str(D / "tdpkg_train" / "train.py"), "--steps", "4", "--out", str(out)]
    tl = run.report.timeline
    assert len(tl.steps) == 4 and [m.name for m in tl.models] == ["TinyNet"]
    assert layer_names(run) == ["body.0", "out"]


def test_package_with_main(tmp_path, package_dir):
    out = tmp_path / "seen.json"
    run = run_script("tdpkg_main", "3", str(out), module=True)
    assert run.status == 0, run.report.timeline.run.script_exception
    seen = json.loads(out.read_text())
    assert seen["spec_name"] == "tdpkg_main.__main__" and seen["name"] == "__main__"
    assert seen["doc"].startswith("A package run as")
    assert seen["argv"][0] == str(D / "tdpkg_main" / "__main__.py")
    assert len(run.report.timeline.steps) == 3 and layer_names(run) == ["0", "2"]


# -- epochs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [[], ["--peek"], ["--eval-train"], ["--fresh-loader"], ["--workers", "2"],
                                     ["--workers", "2", "--persistent", "--eval-train"]],
                         ids=["plain", "peek", "eval-on-train-loader", "fresh-loader", "workers", "persistent-workers"])
def test_epochs_from_training_loader_not_validation(tmp_path, options):
    run = run_script(D / "epochs.py", "--epochs", "3", "--out", str(tmp_path / "h.json"), *options)
    assert run.status == 0, run.report.timeline.run.script_exception
    tl = run.report.timeline
    assert tl.run.epochs == 3
    assert len(tl.steps) == 9  # 48 samples, batch 16
    assert [s.epoch for s in tl.steps] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [s.step for s in tl.steps] == list(range(9))


def test_a_new_optimizer_mid_run_keeps_counting_steps():
    run = run_script(D / "phases.py")
    tl = run.report.timeline
    assert run.status == 0
    assert [s.step for s in tl.steps] == list(range(9))
    assert [s.epoch for s in tl.steps] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert tl.run.epochs == 3 and tl.optimizers == ["SGD", "Adam"]
    assert [s.lr for s in tl.steps] == [0.1] * 3 + [1e-3] * 6
    backbone = layer_names(run).index("0.0")
    assert tl.steps[0].layer_grad_norms[backbone] is None, "frozen in phase 1"
    assert tl.steps[5].layer_grad_norms[backbone] is not None


def test_a_wrapper_optimizer_steps_once_per_step():
    run = run_script(D / "wrapped_optimizer.py")
    tl = run.report.timeline
    assert run.status == 0, tl.run.script_exception
    assert [s.step for s in tl.steps] == list(range(5)) and tl.optimizers == ["Lookahead"]
    assert all(s.loss is not None and s.grad_norm is not None for s in tl.steps)


# -- steps ------------------------------------------------------------------------------------------

def test_gradient_accumulation_counts_optimizer_steps(tmp_path):
    out = tmp_path / "losses.json"
    run = run_script(D / "accumulate.py", "--accum", "4", "--batches", "12", "--out", str(out))
    tl = run.report.timeline
    assert tl.backward_calls == 12 and [s.step for s in tl.steps] == [0, 1, 2]
    # the step's loss is the objective whose gradient was applied: the sum of the (divided) losses
    assert [s.loss for s in tl.steps] == pytest.approx(json.loads(out.read_text()), rel=1e-6)


def test_gan_two_models_two_optimizers(tmp_path):
    out = tmp_path / "d.json"
    run = run_script(D / "gan.py", "--out", str(out))
    assert run.status == 0, run.report.timeline.run.script_exception
    tl = run.report.timeline
    assert sorted(m.name for m in tl.models) == ["Discriminator", "Generator"]
    assert tl.optimizers == ["Adam", "Adam"]
    assert len(tl.steps) == 5 and tl.backward_calls == 15 and tl.run.epochs == 1
    names = layer_names(run)
    assert len(names) == 4 and len(set(names)) == 4
    assert all(None not in s.layer_grad_norms for s in tl.steps), "both optimizers measured per step"
    assert [s.loss for s in tl.steps] == pytest.approx(json.loads(out.read_text()), rel=1e-6)
    assert not tl.internal_errors and not tl.events


def test_mixed_precision_scaled_loss_is_unscaled(tmp_path):
    out = tmp_path / "l.json"
    run = run_script(D / "amp.py", "--out", str(out))
    tl = run.report.timeline
    assert [s.loss for s in tl.steps] == pytest.approx(json.loads(out.read_text()), rel=1e-6)


def test_mixed_precision_skipped_steps(tmp_path):
    out = tmp_path / "l.json"
    run = run_script(D / "amp.py", "--init-scale", str(2.0**127), "--steps", "10", "--out", str(out))
    tl = run.report.timeline
    taken = json.loads(out.read_text())
    assert 0 < len(taken) < 10, "some steps were skipped by the scaler"
    assert [s.step for s in tl.steps] == list(range(len(taken)))
    assert [s.loss for s in tl.steps] == pytest.approx(taken, rel=1e-6)
    assert not tl.events_of("nonfinite_loss")


# -- NaN localization -----------------------------------------------------------------------------

@pytest.mark.parametrize("nan_step", [0, 2])
def test_keyword_arguments_reach_the_replay(tmp_path, nan_step):
    run = run_script(D / "kwargs_model.py", "--nan-step", str(nan_step))
    event = nonfinite_event(run)
    assert event.step == nan_step
    assert event.data["origin"] == "attn", event.data
    assert run.report.timeline.module_type("attn") == "Attention"


@pytest.fixture(params=["checked-at-backward", "checked-at-step"])
def loss_check(request, monkeypatch):
    """On CPU a loss is read when backward() is called; on CUDA only at the step's read-back.
    Both paths run here (the second as it runs on a GPU)."""
    if request.param == "checked-at-step":
        monkeypatch.setattr(readback, "EAGER_DEVICES", frozenset())
    return request.param


def test_a_skipped_nonfinite_step_is_localized_on_its_own_batch(tmp_path, loss_check):
    out = tmp_path / "l.json"
    run = run_script(D / "kwargs_model.py", "--nan-step", "1", "--skip-nonfinite", "--out", str(out))
    losses = json.loads(out.read_text())
    assert math.isnan(losses[1]) and all(math.isfinite(v) for i, v in enumerate(losses) if i != 1)
    event = nonfinite_event(run)
    assert event.data["origin"] == "attn", event.data
    tl = run.report.timeline
    assert len(tl.steps) == 3
    assert [s.loss for s in tl.steps] == [losses[0], losses[2], losses[3]]


@pytest.mark.parametrize(("poison", "origin"), [("features.3", "features.3"), ("features.1", "features.1"),
                                                ("block", "block")])
def test_nan_origin_in_nested_structures(poison, origin):
    run = run_script(D / "poisoned_cnn.py", "--poison", poison, "--poison-step", "2")
    event = nonfinite_event(run)
    assert event.step == 2 and event.data["origin"] == origin, event.data
    if poison != "block":
        assert event.data.get("weights_nonfinite") == [f"{poison}.weight"]
    else:
        assert not event.data.get("weights_nonfinite")
        assert run.report.timeline.module_type("block") == "ScaleBlock"


@pytest.mark.parametrize(("layer", "value"), [("layer2.0.bn1", "nan"), ("layer3.1.conv2", "inf")])
def test_nan_origin_in_resnet(layer, value):
    run = run_script(D / "resnet.py", "--poison", layer, "--value", value, "--poison-step", "1")
    event = nonfinite_event(run)
    assert event.step == 1 and event.data["origin"] == layer, event.data


def test_checkpointed_blocks_do_not_become_models():
    run = run_script(D / "checkpointed.py", "--poison-step", "2")
    tl = run.report.timeline
    assert [m.name for m in tl.models] == ["Deep"]
    assert layer_names(run)[0] == "stem" and layer_names(run)[-1] == "head"
    event = nonfinite_event(run)
    assert event.step == 2 and event.data["origin"] == "stem", event.data


# -- the user's training is unchanged ------------------------------------------------------------------

def assert_bit_identical(a, b, key: str = "") -> None:
    """Equal bit for bit (so NaN equals NaN, and -0.0 differs from 0.0)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            assert_bit_identical(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if a.is_floating_point():
            bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
            a, b = a.view(bits), b.view(bits)
        assert torch.equal(a, b), key
    else:
        assert a == b, key


@pytest.mark.parametrize(("nan_step", "steps"), [(-1, 8), (3, 8), (-1, 60)],
                         ids=["healthy", "nan-replayed", "memory-sampled"])
def test_training_is_bit_identical_with_and_without_torchdoctor(tmp_path, nan_step, steps, loss_check):
    """60 steps take in the memory breakdown's second sampled step (50), with saved tensors seen
    through saved_tensors_hooks, and the update-ratio samples."""
    plain, watched = tmp_path / "plain.pt", tmp_path / "watched.pt"
    args = ["--steps", str(steps), "--nan-step", str(nan_step)]
    run_plain(D / "seeded.py", *args, "--out", str(plain))
    run = run_script(D / "seeded.py", *args, "--out", str(watched))
    assert run.status == 0, run.report.timeline.run.script_exception
    a, b = torch.load(plain, weights_only=False), torch.load(watched, weights_only=False)
    assert_bit_identical(a, b)
    if nan_step >= 0:
        assert a["skipped"] == [nan_step]
        event = nonfinite_event(run)
        assert event.data["origin"] == "loss", event.data  # the model's output was finite: 0/0 in the loss
        assert event.data.get("model_output_finite") is True
    else:
        assert not run.report.timeline.events


# -- exit status and cleanup ------------------------------------------------------------------------

def test_sys_exit_status_passes_through():
    run = run_script(D / "exits.py", "--exit", "3")
    assert run.status == 3 and run.report.timeline.run.exit_status == 3
    assert len(run.report.timeline.steps) == 2


def test_uncaught_exception_is_status_1_with_a_report(capsys):
    run = run_script(D / "exits.py", "--raise")
    assert run.status == 1
    tl = run.report.timeline
    assert tl.run.exit_status == 1 and len(tl.steps) == 2 and layer_names(run) == ["0", "2"]
    assert tl.run.script_exception == "RuntimeError: the data is not what I expected"
    err = capsys.readouterr().err
    assert "exits.py" in err and "RuntimeError: the data is not what I expected" in err
    assert "torchdoctor" not in err.split("Traceback", 1)[-1].split("RuntimeError")[0]
