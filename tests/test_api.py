"""The in-code entry points: `watch` as a context manager and decorator, and `fit`."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

import torchdoctor
from torchdoctor import Severity


def regression_data(n: int = 512) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 16, 16, generator=g)
    return TensorDataset(x, x.mean(dim=(1, 2, 3)).unsqueeze(1) * 10)


def regressor() -> nn.Module:
    """The CNN of examples/exploding_gradients.py, seeded the same way."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1),
        nn.Flatten(), nn.Linear(8 * 16 * 16, 32), nn.LeakyReLU(0.1), nn.Linear(32, 1),
    )


def train(model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int = 2) -> list[float]:
    losses = []
    loader = DataLoader(regression_data(), batch_size=32, shuffle=True)
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def test_watch_context_manager_finds_explosion():
    model = regressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.004, momentum=0.9)
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        train(model, opt)
    report = doctor.report
    assert report is not None and not report.healthy
    explode = report.by_code("exploding_gradients")
    nan = report.by_code("nonfinite_loss")
    assert explode is not None and nan is not None
    assert explode.step < nan.step
    assert nan.severity is Severity.CRITICAL
    lr_fix = next(f for f in explode.fixes if f.action == "lower_learning_rate")
    assert lr_fix.params["lr"] == pytest.approx(0.0004)


def test_watch_healthy_loop_is_clean_and_prints_one_line():
    model = regressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.0004, momentum=0.9)
    buf = io.StringIO()
    with torchdoctor.watch(model, opt, console=Console(file=buf, width=100)) as doctor:
        train(model, opt)
    assert doctor.report.healthy, doctor.report.codes()
    text = buf.getvalue()
    assert "healthy: 32 steps" in text and "grad norm median" in text


def test_watch_only_watches_the_given_model():
    student, teacher = regressor(), regressor()
    opt = torch.optim.SGD(student.parameters(), lr=0.001)
    with torchdoctor.watch(student, opt, print_report=False) as doctor:
        for x, y in DataLoader(regression_data(64), batch_size=16):
            with torch.no_grad():
                target = teacher(x)
            opt.zero_grad()
            F.mse_loss(student(x), target + y).backward()
            opt.step()
    assert [m.name for m in doctor.report.timeline.models] == ["Sequential"]
    assert len(doctor.report.timeline.models) == 1
    assert len(doctor.report.timeline.steps) == 4


def test_decorator_discovers_model_and_optimizer_itself():
    @torchdoctor.watch(print_report=False)
    def run_training(lr: float) -> list[float]:
        model = regressor()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        return train(model, opt, epochs=2)

    losses = run_training(0.004)
    assert len(losses) == 32
    report = run_training.doctor.report
    assert report.timeline.optimizers == ["SGD"]
    assert report.timeline.run.epochs == 2
    assert report.by_code("exploding_gradients") is not None
    run_training(0.0004)
    assert run_training.doctor.report.healthy


def test_watch_restores_hooks_even_when_the_loop_raises():
    from torch.nn.modules import module as module_mod

    model = regressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.001)
    backward = torch.autograd.backward
    with pytest.raises(RuntimeError, match="user bug"):
        with torchdoctor.watch(model, opt, print_report=False) as doctor:
            train(model, opt, epochs=1)
            raise RuntimeError("user bug")
    assert doctor.report is not None and len(doctor.report.timeline.steps) == 16
    assert torch.autograd.backward is backward
    assert not module_mod._global_forward_hooks and not module_mod._global_forward_pre_hooks


def test_fit_returns_history_and_report():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    train_loader = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=32, shuffle=True, generator=g)
    val_loader = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    result = torchdoctor.fit(model, train_loader, opt, nn.CrossEntropyLoss(), epochs=3, val_loader=val_loader,
                             print_report=False)
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["val_acc"] > 0.8
    assert result.report.healthy and len(result.report.timeline.steps) == 18
    assert result.report.timeline.run.epochs == 3


def test_fit_traces_a_nan_to_the_input():
    x = torch.randn(64, 4)
    x[40, 2] = float("nan")
    y = torch.randn(64, 1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    result = torchdoctor.fit(model, DataLoader(TensorDataset(x, y), batch_size=16), opt, nn.MSELoss(), epochs=1,
                             print_report=False)
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 2
    assert finding.evidence["origin"] == "input"
    assert finding.evidence["input"]["nan_count"] == 1
    assert finding.fixes[0].action == "clean_input_data"


def test_watch_with_a_memory_budget_reports_pressure_and_the_memory_table():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    buf = io.StringIO()
    console = Console(file=buf, width=120, color_system=None)
    with torchdoctor.watch(model, optimizer, memory_budget="4MiB", memory_report=True, console=console) as doctor:
        for _ in range(3):
            loss = F.cross_entropy(model(torch.randn(16, 3, 32, 32)), torch.randint(0, 10, (16,)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finding = doctor.report.by_code("memory_pressure")
    assert finding is not None and finding.severity is Severity.ERROR
    assert finding.evidence["limit_bytes"] == 4 * 2**20
    text = buf.getvalue()
    assert "memory_pressure" in text and "share of peak" in text and "budget 4 MiB" in text


def _seeded_training(watch: bool = False, use_fit: bool = False) -> dict:
    """Dropout, BatchNorm, a shuffling loader: RNG, running statistics and weights all must come
    out the same, bit for bit, whether torchdoctor watched or not."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                          nn.Flatten(), nn.Linear(4 * 16 * 16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(regression_data(256), batch_size=32, shuffle=True)
    losses: list[float] = []
    if use_fit:
        result = torchdoctor.fit(model, loader, optimizer, nn.MSELoss(), epochs=8, print_report=False)
        losses = [h["train_loss"] for h in result.history]
    else:
        def train() -> None:
            for _ in range(8):
                total = 0.0
                for x, y in loader:
                    optimizer.zero_grad(set_to_none=True)
                    loss = F.mse_loss(model(x), y)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach())
                losses.append(total / len(loader))
        if watch:
            with torchdoctor.watch(model, optimizer, print_report=False):
                train()
        else:
            train()
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "losses": losses,
            "rng": torch.get_rng_state()}


@pytest.mark.parametrize("entry", ["watch", "fit"])
def test_watch_and_fit_train_bit_for_bit_as_the_plain_loop(entry):
    """64 steps: the memory breakdown's sampled steps (0 and 50) and the update-ratio samples in."""
    plain = _seeded_training()
    watched = _seeded_training(watch=entry == "watch", use_fit=entry == "fit")
    assert plain["losses"] == watched["losses"]
    assert torch.equal(plain["rng"], watched["rng"])
    for key, value in plain["state"].items():
        assert torch.equal(value, watched["state"][key]), key
