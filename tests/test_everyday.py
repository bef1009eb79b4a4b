"""The everyday bugs: each one in a real (tiny) training, beside its healthy control that must
stay clean, including the intentional versions (a backbone frozen on purpose, deliberate
gradient accumulation, log_softmax + NLLLoss, a BatchNorm first layer, a model without dropout)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchdoctor.session import Doctor

EVERYDAY = {"frozen_parameters", "missing_zero_grad", "double_softmax", "unnormalized_input", "eval_mode_missing",
            "dataloader_bottleneck", "dead_units", "saturated_activations"}


def data(n: int = 64, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long() + 2 * (x[:, 1].mean(dim=(1, 2)) > 0).long()
    return x, y % classes


def cnn(end: nn.Module | None = None, first: nn.Module | None = None, dropout: bool = True) -> nn.Module:
    layers = [first] if first is not None else []
    layers += [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Dropout(0.2)] if dropout else []
    layers += [nn.Linear(8, 4)]
    layers += [end] if end is not None else []
    return nn.Sequential(*layers)


def cross_entropy(output, target):
    return F.cross_entropy(output, target)  # looked up when called, as a script's own code does


def nll_loss(output, target):
    return F.nll_loss(output, target)


def train(model: nn.Module, steps: int = 30, optimizer=None, loss_fn=cross_entropy, x=None, y=None,
          zero: str = "every", validate: bool = False, eval_mode: bool = True, accumulate: int = 1):
    torch.manual_seed(0)
    if x is None:
        x, y = data()
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05)
    with Doctor(print_report=False) as doctor:
        for step in range(steps):
            batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
            if zero == "every" or (zero == "accumulate" and step % accumulate == 0):
                optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            (loss / accumulate).backward()
            if zero != "accumulate" or (step + 1) % accumulate == 0:
                optimizer.step()
            if validate and step % 10 == 9:
                if eval_mode:
                    model.eval()
                with torch.no_grad():
                    for i in range(0, 64, 32):
                        loss_fn(model(x[i:i + 32]), y[i:i + 32])
                model.train()
    return doctor.report


def everyday(report) -> set[str]:
    return {f.code for f in report.findings} & EVERYDAY


# -- frozen_parameters -------------------------------------------------------------------------------------
def test_an_optimizer_on_the_head_alone_leaves_the_backbone_untrained():
    torch.manual_seed(0)
    model = cnn(dropout=False)
    report = train(model, optimizer=torch.optim.SGD(model[-1].parameters(), lr=0.05))
    finding = report.by_code("frozen_parameters")
    assert finding is not None, report.findings
    assert finding.evidence["params"] == ["0.weight", "0.bias"] and finding.evidence["numel"] == 8 * 3 * 9 + 8
    assert finding.where == "0" and finding.step == 2
    assert [f.action for f in finding.fixes] == ["optimize_all_parameters", "freeze_parameters"]
    assert "requires_grad_(False)" in finding.fixes[1].snippet


def test_a_learning_rate_of_zero_counts_as_never_updated():
    torch.manual_seed(0)
    model = cnn(dropout=False)
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.0},
                                 {"params": model[-1].parameters()}], lr=0.05)
    finding = train(model, optimizer=optimizer).by_code("frozen_parameters")
    assert finding is not None and finding.evidence["zero_lr"] == ["0.weight", "0.bias"]
    assert "lr 0" in finding.title


def test_a_backbone_frozen_on_purpose_is_clean():
    torch.manual_seed(0)
    model = cnn(dropout=False)
    model[0].requires_grad_(False)
    report = train(model, optimizer=torch.optim.SGD(model[-1].parameters(), lr=0.05))
    assert "frozen_parameters" not in everyday(report), report.findings


def test_two_optimizers_over_two_models_are_clean():
    """A GAN-like pair: each model has its own optimizer, both step every step."""
    torch.manual_seed(0)
    encoder, head = nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Linear(8, 3)
    opt_e, opt_h = torch.optim.SGD(encoder.parameters(), lr=0.05), torch.optim.Adam(head.parameters(), lr=1e-3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    with Doctor(print_report=False) as doctor:
        for _ in range(10):
            opt_e.zero_grad()
            opt_h.zero_grad()
            F.cross_entropy(head(encoder(x)), y).backward()
            opt_h.step()
            opt_e.step()
    assert "frozen_parameters" not in everyday(doctor.report), doctor.report.findings


# -- missing_zero_grad -------------------------------------------------------------------------------------
def test_a_loop_without_zero_grad_is_found():
    report = train(cnn(dropout=False), zero="never")
    finding = report.by_code("missing_zero_grad")
    assert finding is not None, report.findings
    assert finding.evidence["zero_grad_calls"] == 0 and finding.evidence["steps_carried"] >= 20
    assert finding.fixes[0].action == "call_zero_grad" and "optimizer.zero_grad()" in finding.fixes[0].snippet


def test_deliberate_gradient_accumulation_is_clean():
    report = train(cnn(dropout=False), steps=32, zero="accumulate", accumulate=4)
    assert "missing_zero_grad" not in everyday(report), report.findings


def test_gradients_reset_by_hand_are_clean():
    torch.manual_seed(0)
    model = cnn(dropout=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with Doctor(print_report=False) as doctor:
        for step in range(12):
            if step % 2:
                for p in model.parameters():
                    p.grad = None
            else:
                for p in model.parameters():
                    if p.grad is not None:
                        p.grad.zero_()
            F.cross_entropy(model(x[:16]), y[:16]).backward()
            optimizer.step()
    assert "missing_zero_grad" not in everyday(doctor.report), doctor.report.findings


# -- double_softmax ----------------------------------------------------------------------------------------
def test_a_softmax_before_cross_entropy_is_found():
    report = train(cnn(end=nn.Softmax(dim=1), dropout=False))
    finding = report.by_code("double_softmax")
    assert finding is not None, report.findings
    assert finding.where == "5" and finding.evidence["loss"] == "cross_entropy"
    assert finding.fixes[0].action == "fix_loss_input" and "Softmax" in finding.fixes[0].text


def test_nll_loss_fed_raw_logits_is_found():
    report = train(cnn(dropout=False), loss_fn=nll_loss)
    finding = report.by_code("double_softmax")
    assert finding is not None and finding.evidence["loss"] == "nll_loss", report.findings
    assert "log_softmax" in finding.fixes[0].snippet


def test_log_softmax_with_nll_loss_and_logits_with_cross_entropy_are_clean():
    assert "double_softmax" not in everyday(train(cnn(end=nn.LogSoftmax(dim=1), dropout=False), loss_fn=nll_loss))
    assert "double_softmax" not in everyday(train(cnn(dropout=False)))
    assert "double_softmax" not in everyday(train(cnn(dropout=False), loss_fn=nn.CrossEntropyLoss()))


# -- unnormalized_input ------------------------------------------------------------------------------------
def pixels() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data()
    return (x * 40 + 128).clamp(0, 255).round(), y


def test_raw_pixels_are_found_with_the_statistics_to_normalize_with():
    x, y = pixels()
    report = train(cnn(dropout=False), x=x, y=y)
    finding = report.by_code("unnormalized_input")
    assert finding is not None, report.findings
    assert finding.where == "0" and finding.evidence["max"] <= 255 and finding.evidence["mean"] > 100
    fix = finding.fixes[0]
    assert fix.action == "normalize_input" and fix.params["divide_by"] == 255
    assert len(fix.params["mean"]) == 3 and all(0.4 < m < 0.6 for m in fix.params["mean"])
    assert "Normalize(mean=" in fix.snippet


def test_normalized_inputs_and_a_batchnorm_first_layer_are_clean():
    assert "unnormalized_input" not in everyday(train(cnn(dropout=False)))
    x, y = pixels()
    assert "unnormalized_input" not in everyday(train(cnn(dropout=False), x=x / 255.0, y=y))
    assert "unnormalized_input" not in everyday(train(cnn(first=nn.BatchNorm2d(3), dropout=False), x=x, y=y))


# -- eval_mode_missing -------------------------------------------------------------------------------------
def test_validation_without_eval_on_a_model_with_dropout_is_found():
    report = train(cnn(), validate=True, eval_mode=False)
    finding = report.by_code("eval_mode_missing")
    assert finding is not None, report.findings
    assert finding.evidence["module_types"] == ["Dropout"] and finding.evidence["evaluation_losses"] >= 2
    assert finding.fixes[0].action == "call_eval" and "model.eval()" in finding.fixes[0].snippet


def test_proper_eval_and_a_model_without_dropout_or_batchnorm_are_clean():
    assert "eval_mode_missing" not in everyday(train(cnn(), validate=True, eval_mode=True))
    assert "eval_mode_missing" not in everyday(train(cnn(dropout=False), validate=True, eval_mode=False))


def test_a_healthy_training_run_has_none_of_the_everyday_findings():
    report = train(cnn(), steps=40, validate=True)
    assert everyday(report) == set() and report.healthy, report.findings


# -- dataloader_bottleneck ---------------------------------------------------------------------------------
class SlowImages(torch.utils.data.Dataset):
    """Each item takes 2 ms to produce (decoding, augmentation done in Python)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, delay: float) -> None:
        self.x, self.y, self.delay = x, y, delay

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if self.delay:
            import time

            time.sleep(self.delay)
        return self.x[i], self.y[i]


def train_from_loader(dataset, epochs: int = 2):
    torch.manual_seed(0)
    model = cnn(dropout=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True)
    with Doctor(print_report=False) as doctor:
        for _ in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                cross_entropy(model(x), y).backward()
                optimizer.step()
    return doctor.report


def test_a_slow_dataset_without_workers_is_found_with_the_workers_to_use():
    x, y = data()
    report = train_from_loader(SlowImages(x, y, delay=0.002))
    finding = report.by_code("dataloader_bottleneck")
    assert finding is not None, report.findings
    assert finding.evidence["num_workers"] == 0 and finding.evidence["wait_share"] > 0.5
    assert finding.evidence["wait_ms_per_batch"] >= 16 and finding.evidence["dataset"] == "SlowImages"
    fix = finding.fixes[0]
    assert fix.action == "more_dataloader_workers" and fix.params["num_workers"] >= 2
    assert f"num_workers={fix.params['num_workers']}" in fix.snippet


def test_a_fast_in_memory_loader_is_clean():
    x, y = data()
    report = train_from_loader(torch.utils.data.TensorDataset(x, y))
    assert "dataloader_bottleneck" not in {f.code for f in report.findings}, report.findings
    assert report.timeline.habits.loaders["loader 1"]["batches"] == 16


# -- dead_units ---------------------------------------------------------------------------------------------
def mlp(activation: type[nn.Module], width: int = 32, depth: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    d_in = 3 * 8 * 8
    for _ in range(depth):
        layers += [nn.Linear(d_in, width), activation()]
        d_in = width
    return nn.Sequential(*layers, nn.Linear(d_in, 4))


def test_relu_units_killed_by_negative_biases_are_found():
    torch.manual_seed(0)
    model = mlp(nn.ReLU)
    with torch.no_grad():
        model[3].bias.fill_(-20.0)  # the second hidden layer: no input gets past its ReLU
    report = train(model, steps=60)
    finding = report.by_code("dead_units")
    assert finding is not None, report.findings
    assert finding.where == "4" and finding.evidence["dead"] == finding.evidence["units"] == 32
    assert {f.action for f in finding.fixes} >= {"change_activation", "change_initialization"}


def test_a_healthy_relu_network_is_clean():
    report = train(mlp(nn.ReLU), steps=60)
    deads = [s for s in report.timeline.habits.activations if "dead" in s]
    assert deads and "dead_units" not in everyday(report), report.findings
    report = train(cnn(), steps=60)
    assert "dead_units" not in everyday(report), report.findings


# -- saturated_activations ---------------------------------------------------------------------------------
def test_tanh_pinned_by_large_weights_is_found():
    torch.manual_seed(0)
    model = mlp(nn.Tanh)
    with torch.no_grad():
        model[1].weight.mul_(30.0)
    report = train(model, steps=60)
    finding = report.by_code("saturated_activations")
    assert finding is not None, report.findings
    assert finding.where == "2" and finding.evidence["type"] == "Tanh"
    assert finding.fixes[0].action == "add_normalization"


def test_a_healthy_tanh_network_and_a_confident_output_sigmoid_are_clean():
    report = train(mlp(nn.Tanh), steps=60)
    sampled = [s for s in report.timeline.habits.activations if "saturated" in s]
    assert sampled and "saturated_activations" not in everyday(report), report.findings
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4), nn.Sigmoid())
    report = train(model, steps=60, loss_fn=lambda out, y: F.binary_cross_entropy(out, F.one_hot(y, 4).float()))
    assert "saturated_activations" not in everyday(report), report.findings
