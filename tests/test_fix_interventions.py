"""The interventions `torchdoctor fix` applies from outside the script, each entered through
`repair.apply.intervention` around a real tiny training run: the effect is there inside the
context and gone after it (every patched constructor and global hook restored)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
import torch.optim.optimizer as optim_module
from torch import nn
from torch.nn.modules import module as module_module
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.dataloader import _BaseDataLoaderIter

from torchdoctor.repair.apply import SUPPORTED, intervention, supported


def _globals() -> tuple[object, ...]:
    return (torch.optim.Optimizer.__dict__["__init__"], DataLoader.__dict__["__init__"],
            DataLoader.__dict__["__iter__"], _BaseDataLoaderIter.__dict__["__next__"], torch.Tensor.backward,
            len(module_module._global_forward_pre_hooks), len(module_module._global_forward_hooks),
            len(optim_module._global_optimizer_pre_hooks), len(optim_module._global_optimizer_post_hooks))


@pytest.fixture(autouse=True)
def restored():
    """Every test: PyTorch is exactly as before once the intervention has exited."""
    torch.manual_seed(0)
    before = _globals()
    yield
    assert _globals() == before


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize(("action", "params", "expected"), [
    ("fix_loss_input", {}, False), ("fix_loss_input", {"module": "3"}, True),
    ("lower_learning_rate", {"lr": 1e-3}, True), ("lower_learning_rate", {"lr": None}, False),
    ("change_activation", {"modules": ["1"], "with": "ReLU"}, True), ("change_activation", {"modules": ["1"]}, False),
    ("change_activation", {"modules": ["1"], "activation": "GELU"}, True), ("add_normalization", {"module": "1"}, True),
    ("call_eval", {}, True), ("no_such_action", {}, False)])
def test_supported(action, params, expected):
    assert supported(action, params) is expected
    if action not in SUPPORTED:
        with pytest.raises(KeyError):
            intervention(action, params)


def test_every_supported_action_enters_and_exits_cleanly():
    """A context that is entered and left with no training in it restores everything too."""
    samples = {"lr": 0.1, "max_norm": 1.0, "weight_decay": 0.1, "modules": ["1"], "with": "ReLU",
               "after": ["0"], "module": "1", "eps": 1e-3, "after_module": "0", "mean": 0.0, "std": 1.0,
               "padding": 2, "before": ["2"], "num_workers": 2, "batch_size": 4, "step": 3}
    for action in SUPPORTED:
        assert supported(action, samples)
        with intervention(action, samples):
            pass


def test_set_learning_rate_scales_every_optimizer():
    a, b = _mlp(), _mlp()
    with intervention("lower_learning_rate", {"lr": 0.01, "current_lr": 0.1}):
        first = torch.optim.SGD(a.parameters(), lr=0.1)
        second = torch.optim.Adam(b.parameters(), lr=0.2)
    assert first.param_groups[0]["lr"] == pytest.approx(0.01)
    assert second.param_groups[0]["lr"] == pytest.approx(0.02)
    assert torch.optim.SGD(a.parameters(), lr=0.1).param_groups[0]["lr"] == 0.1  # outside: untouched


def test_add_weight_decay_sets_groups_and_decays():
    model = nn.Linear(4, 4)
    with intervention("add_weight_decay", {"weight_decay": 0.5}):
        sgd = torch.optim.SGD(model.parameters(), lr=0.1)
        kept = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.05)
        weight = model.weight.detach().clone()
        sgd.zero_grad()
        (model(torch.randn(2, 4)).sum() * 0).backward()  # zero gradient: only the decay moves weights
        sgd.step()
    assert sgd.param_groups[0]["weight_decay"] == 0.5 and sgd.defaults["weight_decay"] == 0.5
    assert kept.param_groups[0]["weight_decay"] == 0.05
    assert torch.allclose(model.weight, weight * (1 - 0.1 * 0.5))
    assert torch.optim.SGD(model.parameters(), lr=0.1).param_groups[0]["weight_decay"] == 0


def test_add_weight_decay_as_adamw_on_adam():
    model = nn.Linear(4, 4)
    with intervention("add_weight_decay", {"weight_decay": 0.01, "optimizer": "AdamW"}):
        adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    group = adam.param_groups[0]
    assert group["weight_decay"] == 0.01 and group["decoupled_weight_decay"] is True
    with intervention("add_weight_decay", {"weight_decay": 0.01}):
        plain = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert plain.param_groups[0]["weight_decay"] == 0.01
    assert plain.param_groups[0]["decoupled_weight_decay"] is False


def test_clip_gradients_before_step():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with intervention("clip_gradients", {"max_norm": 1e-3}):
        optimizer.zero_grad()
        (model(torch.randn(16, 4)).sum() * 100).backward()
        optimizer.step()
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert norm <= 1e-3 * 1.01


def test_call_zero_grad_after_step():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with intervention("call_zero_grad", {}):
        F.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 2)).backward()
        assert all(p.grad is not None for p in model.parameters())
        optimizer.step()
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    F.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 2)).backward()
    optimizer.step()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())  # outside: kept


def test_skip_nonfinite_steps_applies_nothing():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with intervention("skip_nonfinite_steps", {}):
        x = torch.randn(8, 4)
        x[0, 0] = float("nan")
        model(x).sum().backward()
        optimizer.step()
        assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
        optimizer.zero_grad()
        model(torch.randn(8, 4)).sum().backward()  # a finite step still applies
        optimizer.step()
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("frozen", [False, True])
def test_optimize_all_parameters_adds_backbone(frozen):
    model = nn.Sequential(OrderedDict(backbone=nn.Sequential(nn.Linear(4, 8), nn.ReLU()), head=nn.Linear(8, 2)))
    if frozen:
        model.backbone.requires_grad_(False)
    backbone = model.backbone[0].weight.detach().clone()
    with intervention("optimize_all_parameters", {}):
        optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
        assert len(optimizer.param_groups) == 1
        _train(model, optimizer, steps=1)
        assert len(optimizer.param_groups) == 2
        assert {id(p) for p in optimizer.param_groups[1]["params"]} == {id(p) for p in model.backbone.parameters()}
        _train(model, optimizer, steps=3)
        assert len(optimizer.param_groups) == 2  # added once
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert not torch.equal(model.backbone[0].weight, backbone)


def test_call_eval_around_no_grad():
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 2))
    seen: list[bool] = []
    model[1].register_forward_hook(lambda m, a, o: seen.append(m.training))
    x = torch.randn(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with intervention("call_eval", {}):
        _train(model, optimizer, steps=1)
        with torch.no_grad():
            first, second = model(x), model(x)
        assert not model.training
        assert torch.equal(first, second)  # dropout off: deterministic
        _train(model, optimizer, steps=1)
        assert model.training
        with torch.inference_mode():
            model(x)
    assert seen == [True, False, False, True, False]
    with torch.no_grad():  # outside: not switched
        model.train()
        model(x)
    assert seen[-1] is True


def test_change_activation_on_named_module():
    model, x = _mlp(), torch.randn(8, 4)
    with torch.no_grad():
        relu = model[2](F.relu(model[0](x)))
        sigmoid = model(x)
        with intervention("change_activation", {"modules": ["1"], "with": "ReLU"}):
            assert torch.allclose(model(x), relu)
        assert torch.allclose(model(x), sigmoid)
        with intervention("change_activation", {"modules": ["1", "9"], "with": "ReLU"}):
            assert torch.allclose(model(x), sigmoid)  # a name not in the model: nothing applied


@pytest.mark.parametrize("params", [{"after": ["0"]}, {"modules": ["1"]}, {"module": "1"}])
def test_add_normalization(params):
    model, x = _mlp(), torch.randn(8, 4) * 50 + 20
    with torch.no_grad():
        expected = model[2](torch.sigmoid(F.batch_norm(model[0](x), None, None, training=True)))
        plain = model(x)
        with intervention("add_normalization", params):
            assert torch.allclose(model(x), expected, atol=1e-6)
        assert torch.allclose(model(x), plain)
        with intervention("add_normalization", {"after": ["nope"]}):
            assert torch.allclose(model(x), plain)


def test_fix_loss_input_removes_softmax():
    model, x = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Softmax(dim=1)), torch.randn(8, 4)
    with torch.no_grad():
        logits = F.relu(model[0](x))
        with intervention("fix_loss_input", {"module": "2"}):
            assert torch.allclose(model(x), logits)
        assert torch.allclose(model(x), logits.softmax(dim=1))
        with intervention("fix_loss_input", {"module": "5"}):
            assert torch.allclose(model(x), logits.softmax(dim=1))


def test_add_epsilon_after_module():
    model, x = nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.randn(32, 4)
    with torch.no_grad():
        plain = model(x)
        assert (plain == 0).any()
        with intervention("add_epsilon", {"eps": 1e-3, "after_module": "1"}):
            out = model(x)
        assert torch.allclose(out, plain + 1e-3) and out.min() >= 1e-3
        with intervention("add_epsilon", {"eps": 1e-3, "after_module": "7"}):
            assert torch.equal(model(x), plain)


def test_add_dropout_raises_p_for_the_run():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 2))
    with intervention("add_dropout", {"modules": ["1"], "p": 0.3}):
        model(torch.randn(2, 4))
        assert model[1].p == 0.3
    assert model[1].p == 0.1


def test_add_dropout_before_module_in_training_only():
    model, x = _mlp(), torch.randn(8, 4)
    with intervention("add_dropout", {"before": ["2"], "p": 0.5}):
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    model.train()
    assert torch.equal(model(x), model(x))


def test_augment_data_in_training_forwards_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten())
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    x = torch.arange(2 * 64, dtype=torch.float32).view(2, 1, 8, 8)
    with intervention("augment_data", {"padding": 2}):
        for _ in range(4):
            model(x)
        with torch.no_grad():
            model(x)
        model.eval()
        model(x)
    assert any(not torch.equal(s, x) for s in seen[:4]) and all(s.shape == x.shape for s in seen[:4])
    assert torch.equal(seen[4], x) and torch.equal(seen[5], x)


class _Recorder(nn.Module):
    """A model that keeps what its forward was given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.linear(x)


def _with_nan() -> torch.Tensor:
    x = torch.randn(16, 3)
    x[3, 1], x[7, 0], x[9, 2] = float("nan"), float("inf"), float("-inf")
    return x


def _feed(model: _Recorder, x: torch.Tensor, loader: bool) -> None:
    """Train on `x` through a DataLoader (shuffled) or by passing it straight to the model."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for xb, yb in DataLoader(TensorDataset(x, torch.randn(len(x), 1)), batch_size=4, shuffle=True) if loader \
            else [(x, torch.randn(len(x), 1))]:
        optimizer.zero_grad()
        F.mse_loss(model(xb), yb).backward()
        optimizer.step()


@pytest.mark.parametrize("loader", [True, False])
def test_clean_input_data(loader):
    x, model = _with_nan(), _Recorder()
    with intervention("clean_input_data", {}):
        _feed(model, x, loader)
    seen = torch.cat(model.inputs)
    assert torch.isfinite(seen).all() and torch.isfinite(model.linear.weight).all()
    assert (seen == 0).sum() >= 3 and len(seen) == len(x)
    model(x)
    assert not torch.isfinite(model.inputs[-1]).all()  # outside: as given


@pytest.mark.parametrize("loader", [True, False])
def test_normalize_input(loader):
    x = torch.randint(0, 256, (32, 3)).float()
    x[:, 2] = x[:, 2] / 4  # a channel with its own range
    mean, std = (x / 255).mean(0).tolist(), (x / 255).std(0).tolist()
    model = _Recorder()
    with intervention("normalize_input", {"divide_by": 255, "mean": mean, "std": std}):
        _feed(model, x, loader)
    seen = torch.cat(model.inputs)
    assert torch.allclose(seen.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(seen.std(0), torch.ones(3), atol=1e-5)
    if not loader:
        assert torch.allclose(seen, (x / 255 - torch.tensor(mean)) / torch.tensor(std), atol=1e-6)


def _dataset(n: int = 32) -> TensorDataset:
    return TensorDataset(torch.randn(n, 4), torch.randn(n, 2))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_more_dataloader_workers():
    with intervention("more_dataloader_workers", {"num_workers": 2, "persistent_workers": True}):
        built = DataLoader(_dataset(), batch_size=8)
        already = DataLoader(_dataset(), batch_size=8, num_workers=4)
    assert built.num_workers == 2 and built.persistent_workers is True
    assert already.num_workers == 4 and already.persistent_workers is False
    assert DataLoader(_dataset(), batch_size=8).num_workers == 0  # outside: untouched


def test_reduce_batch_size():
    with intervention("reduce_batch_size", {"batch_size": 4}):
        keyword = DataLoader(_dataset(), batch_size=16)
        positional = DataLoader(_dataset(), 16, True)
        small = DataLoader(_dataset(), batch_size=2)
    assert keyword.batch_size == 4 and positional.batch_size == 4 and small.batch_size == 2
    assert [len(xb) for xb, _ in keyword] == [4] * 8
    assert DataLoader(_dataset(), batch_size=16).batch_size == 16


def test_detach_logged_tensors():
    model = _mlp()
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    with intervention("detach_logged_tensors", {}):
        loss = F.mse_loss(model(x), y)
        loss.backward()
        assert loss.grad_fn is None and not loss.requires_grad
        total = torch.zeros(())
        total += loss
        assert total.grad_fn is None
        kept = F.mse_loss(model(x), y)
        kept.backward(retain_graph=True)
        assert kept.grad_fn is not None
        kept.backward()  # the graph was retained: a second backward still works
        assert kept.grad_fn is None
    loss = F.mse_loss(model(x), y)
    loss.backward()
    total = torch.zeros(())
    total += loss
    assert loss.grad_fn is not None and total.grad_fn is not None  # outside: the graph is kept


@pytest.mark.parametrize(("k", "expected"), [(3, [2, 2, 0, 0, 0]), (2, [2, 2, 0, 0, 0]), (0, [2, 0, 0, 0, 0])])
def test_early_stopping_stops_training_loader_only(k, expected):
    """The training loader yields nothing from the first pass that starts after k+1 steps (a pass
    already begun runs to its end, so with 2 batches a pass k=2 still steps 4 times)."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    train = DataLoader(_dataset(8), batch_size=4)  # 2 batches a pass
    val = DataLoader(_dataset(8), batch_size=4)
    steps, val_batches, train_batches = [0], [], []
    with intervention("early_stopping", {"step": k}):
        for _ in range(5):
            count = 0
            for xb, yb in train:
                optimizer.zero_grad()
                F.mse_loss(model(xb), yb).backward()
                optimizer.step()
                steps[0] += 1
                count += 1
            train_batches.append(count)
            with torch.no_grad():
                val_batches.append(sum(1 for _ in val))
    assert steps[0] == sum(expected) >= k + 1
    assert train_batches == expected
    assert val_batches == [2] * 5
    assert sum(1 for _ in train) == 2  # outside: the loader yields again


def test_gradient_checkpointing_saves_fewer_tensors_and_computes_the_same():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU()),
                          nn.Linear(64, 2))
    x = torch.randn(8, 16)

    def saved_and_grads() -> tuple[int, torch.Tensor, list[torch.Tensor]]:
        count = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            count[0] += 1
            return t

        model.zero_grad()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        out.sum().backward()
        return count[0], out.detach(), [p.grad.clone() for p in model.parameters()]

    plain_saved, plain_out, plain_grads = saved_and_grads()
    with intervention("gradient_checkpointing", {"modules": ["1"]}):
        saved, out, grads = saved_and_grads()
        with torch.no_grad():
            assert torch.equal(model(x), plain_out)  # no gradients: the block runs as it is
    assert saved < plain_saved
    assert torch.allclose(out, plain_out) and all(torch.allclose(a, b) for a, b in zip(grads, plain_grads, strict=True))
    assert "forward" not in model[1].__dict__  # the block's own forward again
    assert saved_and_grads()[0] == plain_saved
