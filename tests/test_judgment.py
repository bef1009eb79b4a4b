"""End to end, on real tiny trainings: what the recorder now gives the rules to judge by (the
loss's prior, the phases, functional ReLUs, steps of a loop with no optimizer) and the verdicts
that follow."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchdoctor.findings import Severity
from torchdoctor.session import Doctor


def data(n: int = 256, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, :classes].argmax(1))


def train(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
          **loss_kwargs) -> None:
    for i in range(steps):
        idx = torch.arange(32) + (i * 32) % (len(x) - 32)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx], **loss_kwargs).backward()
        opt.step()


def test_the_loss_prior_is_recorded_with_its_chance_level():
    torch.manual_seed(0)
    x, y = data(classes=4)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Doctor(print_report=False) as doctor:
        train(model, opt, x, y, 20, label_smoothing=0.1, weight=torch.ones(4))
    prior = doctor.report.timeline.prior
    assert prior.loss_fn == "cross_entropy" and prior.classes == 4
    assert prior.label_smoothing == 0.1 and prior.weighted and prior.chance == math.log(4)


def test_a_new_optimizer_and_a_frozen_backbone_each_open_a_phase():
    torch.manual_seed(0)
    x, y = data()
    backbone, head = nn.Linear(8, 16), nn.Linear(16, 4)
    model = nn.Sequential(backbone, nn.ReLU(), head)
    with Doctor(print_report=False) as doctor:
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, 30)
        backbone.requires_grad_(False)  # phase 2: the same model, a new optimizer for the head alone
        train(model, torch.optim.SGD(head.parameters(), lr=0.1), x, y, 30)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        backbone.requires_grad_(True)
        train(model, opt, x, y, 10)
        backbone.requires_grad_(False)  # phase 4: the same optimizer, fewer parameters trained
        for group in opt.param_groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]
        train(model, opt, x, y, 10)
    tl = doctor.report.timeline
    assert [(p.step, p.reason) for p in tl.phase_starts] == [(30, "new_optimizer"), (60, "new_optimizer"),
                                                             (70, "trained_parameters")]
    assert [p.step for p in tl.phases()] == [0, 30, 60, 70]
    assert doctor.report.healthy, doctor.report.codes()


def test_a_loader_over_another_dataset_opens_a_phase_and_a_new_loader_per_epoch_does_not():
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x, y = data(n=128)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Doctor(print_report=False) as doctor:
        for dataset in [TensorDataset(x, y)] * 3 + [TensorDataset(x[:96], y[:96])]:
            for xb, yb in DataLoader(dataset, batch_size=16):  # a new loader each epoch
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
    assert [(p.step, p.reason) for p in doctor.report.timeline.phase_starts] == [(24, "new_dataset")]


def test_a_new_loader_on_a_dead_loaders_id_has_its_own_settings():
    """The flake the test above had: the fourth epoch's loader got the third's id (freed with it),
    and kept the third's dataset size, so the new dataset opened no phase. Made certain here by
    handing the recorder what it held after a dead loader with that id."""
    import weakref

    from torch.utils.data import DataLoader, TensorDataset

    from torchdoctor.recorder.loaders import Loaders

    x, y = data(n=128)
    loader = DataLoader(TensorDataset(x[:96], y[:96]), batch_size=16)
    loaders = Loaders()
    gone = DataLoader(TensorDataset(x, y), batch_size=16)
    loaders.start_pass(gone)
    loaders.names[id(loader)], loaders.settings[id(loader)] = loaders.names[id(gone)], loaders.settings[id(gone)]
    loaders.refs[id(loader)] = weakref.ref(gone)
    del gone  # its reference is dead: `loader` now stands where a dead loader stood
    loaders.start_pass(loader)
    assert loaders.settings[id(loader)]["dataset_size"] == 96


def test_functional_relus_are_sampled_and_dead_ones_found():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 64), nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.relu(self.fc1(x)))

    x, y = data()
    model = Net()
    with torch.no_grad():
        model.fc1.bias[:48] = -20.0  # 48 of 64 units below every input from the start
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Doctor(print_report=False) as doctor:
        train(model, opt, x, y, 60)
    names = {s["module"] for s in doctor.report.timeline.habits.activations}
    assert names == {"Net F.relu#1"}
    dead = doctor.report.by_code("dead_units")
    assert dead is not None and dead.where == "Net F.relu#1", doctor.report.codes()
    # dead from initialization, in a network whose loss comes down: it cost capacity, nothing else
    assert dead.severity is Severity.INFO and dead.evidence["dead"] == 48


def test_a_loop_that_updates_the_weights_by_hand_is_a_training_loop():
    """As PyTorch's word-language-model example: no optimizer, p.data.add_ after backward(), and
    the classic `total_loss += loss` that keeps every step's graph alive."""
    torch.manual_seed(0)
    x, y = data()
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    total_loss = 0.0
    with Doctor(print_report=False) as doctor:
        for i in range(120):
            idx = torch.arange(32) + (i * 32) % 224
            model.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-0.1)
            total_loss += loss
    tl = doctor.report.timeline
    assert len(tl.steps) == 120 and tl.steps[0].loss is not None \
        and any(r.grad_norm is not None for r in tl.steps[-5:])  # norms sampled: one step in five
    assert tl.steps[-1].loss < tl.steps[0].loss
    assert any(r.update_ratio for r in tl.steps)
    leak = doctor.report.by_code("memory_leak")
    # 5.6 KiB a step: a warning by its projection (negligible over 10x this run, a third of RAM over 1M steps)
    assert leak is not None and leak.severity is Severity.WARNING, doctor.report.codes()


def test_gradient_accumulation_without_a_step_is_not_taken_for_a_hand_made_loop():
    torch.manual_seed(0)
    x, y = data()
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    with Doctor(print_report=False) as doctor:
        for _ in range(6):  # backward() only: saliency, accumulation never applied
            F.cross_entropy(model(x[:32]), y[:32]).backward()
    assert doctor.report.timeline.steps == []


def test_a_learning_rate_far_too_high_blows_up_at_step_one():
    torch.manual_seed(0)
    x = torch.randn(512, 3, 16, 16)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0].mean(dim=(1, 2)) > 0).long()
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=20.0, momentum=0.9)
    with Doctor(print_report=False) as doctor:
        for i in range(60):
            idx = torch.arange(32) + (i * 32) % 480
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    found = doctor.report.by_code("divergence") or doctor.report.by_code("nonfinite_loss")
    assert found is not None and found.step <= 3, [(f.code, f.step, f.title) for f in doctor.report.findings]
