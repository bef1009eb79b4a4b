"""torchdoctor's own failures never reach the user's code: they are contained and reported."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import torchdoctor
from torchdoctor.jsonreport import to_dict
from torchdoctor.recorder import failures, steps
from torchdoctor.render import to_text


def seeded_training(steps: int = 6) -> tuple[list[float], torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model[0].weight.detach().clone()


def broken(*args, **kwargs):
    raise ZeroDivisionError("injected fault in a probe")


def test_a_failing_probe_is_contained_and_reported(monkeypatch):
    expected_losses, expected_weight = seeded_training()
    monkeypatch.setattr(steps, "measure_step", broken)
    with torchdoctor.watch(print_report=False) as doctor:
        losses, weight = seeded_training()
    assert losses == expected_losses and torch.equal(weight, expected_weight)
    errors = doctor.report.internal_errors
    assert len(errors) == 1, "the same fault is reported once, not once per step"
    assert "ZeroDivisionError: injected fault in a probe" in errors[0]
    text = to_text(doctor.report)
    assert "internal warning" in text and "injected fault" in text


def test_a_failing_localization_is_contained(monkeypatch):
    monkeypatch.setattr(failures, "replay_forward", broken)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        for step in range(4):
            x = torch.randn(16, 4) * (1e30 if step == 2 else 1.0)  # huge but finite: the loss overflows
            opt.zero_grad()
            loss = F.mse_loss(model(x), torch.zeros(16, 1))
            loss.backward()
            opt.step()
    finding = doctor.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 2
    assert finding.evidence["origin"] is None
    assert "could not replay the forward" in finding.evidence["origin_detail"]


class ScriptedLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(x), y)


def test_torchscript_compiles_the_wrapped_functional_losses_as_the_originals():
    """torch.jit.script compiles F.cross_entropy from source when a scripted module calls it: the
    wrapper must compile to exactly the original, or a working script would fail under us."""
    torch.manual_seed(0)
    plain = torch.jit.script(ScriptedLoss())
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with torchdoctor.watch(print_report=False) as doctor:
        torch.manual_seed(0)
        scripted = torch.jit.script(ScriptedLoss())
        opt = torch.optim.SGD(scripted.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            scripted(x, y).backward()
            opt.step()
    assert plain(x, y).item() > scripted(x, y).item()  # it trained
    assert len(doctor.report.timeline.steps) == 3 and not doctor.report.internal_errors
    assert F.cross_entropy is not None and not hasattr(F.cross_entropy, "__torchdoctor_original__")


def test_a_compiled_training_step_trains_the_same_and_is_still_diagnosed():
    """torch.compile traces the wrapped loss and the module hooks with fake tensors: the probes
    must record nothing then (and not fail the trace), and the steps are still seen."""
    def train() -> tuple[list[float], torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = torch.compile(lambda x, y: F.cross_entropy(model(x), y), backend="eager")
        losses = []
        for _ in range(4):
            opt.zero_grad()
            loss = step(torch.randn(8, 4), torch.randint(0, 3, (8,)))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, model[0].weight.detach().clone()

    plain_losses, plain_weight = train()
    torch._dynamo.reset()
    with torchdoctor.watch(print_report=False) as doctor:
        losses, weight = train()
    torch._dynamo.reset()
    assert losses == plain_losses and torch.equal(weight, plain_weight)
    assert [r.loss for r in doctor.report.timeline.steps] == losses
    assert not doctor.report.internal_errors


def test_a_compiled_model_is_diagnosed_and_says_what_it_could_not_see(run, write_script):
    """torch.compile(model): the layers keep the model's own names, a NaN batch is still traced to
    the input, and one line says what compiled code hides."""
    script = write_script(
        "import torch, torch.nn as nn, torch.nn.functional as F\n"
        "torch.manual_seed(0)\n"
        "model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))\n"
        "compiled = torch.compile(model, backend='aot_eager')\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for step in range(12):\n"
        "    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))\n"
        "    if step == 8:\n"
        "        x[0, 0] = float('nan')\n"
        "    loss = F.cross_entropy(compiled(x), y)\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
    )
    result = run(script)
    assert result.status == 0
    assert [layer.name for layer in result.report.timeline.layers] == ["0", "2"]
    finding = result.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 8 and finding.evidence["origin"] == "input"
    assert "torch.compile'd Sequential: not observed" in to_text(result.report)
    assert to_dict(result.report)["run"]["compiled"] is True


def test_a_failing_rule_is_contained_and_the_other_diagnoses_stand(monkeypatch):
    from torchdoctor.rules import REGISTRY

    def broken_rule(tl, params):
        raise KeyError("injected fault in a rule")

    monkeypatch.setattr(REGISTRY["vanishing_gradients"], "func", broken_rule)
    with torchdoctor.watch(print_report=False) as doctor:
        seeded_training()
    assert any("rule vanishing_gradients failed: KeyError" in e for e in doctor.report.internal_errors)
    assert "internal warning" in to_text(doctor.report)


def test_a_failing_memory_probe_is_contained(monkeypatch):
    expected_losses, expected_weight = seeded_training()
    monkeypatch.setattr("torchdoctor.probes.memory.MemoryMeter.begin", broken)
    with torchdoctor.watch(print_report=False) as doctor:
        losses, weight = seeded_training()
    assert losses == expected_losses and torch.equal(weight, expected_weight)
    assert any("injected fault" in e for e in doctor.report.internal_errors)
