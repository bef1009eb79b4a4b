"""--heal on real tiny runs: a poisoned batch's step is skipped, a run gone to NaN at a huge
learning rate is rolled back with the lr lowered, a healthy run is bit-identical to a plain one,
and every intervention is a `healed` finding."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import torchdoctor
from torchdoctor.config import Config
from torchdoctor.findings import Severity
from torchdoctor.heal import Healer
from torchdoctor.rules.healed import healed
from torchdoctor.timeline import Timeline

STEPS = 30


def data(steps: int = STEPS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1, generator=g)
    out = []
    for _ in range(steps):
        x = torch.randn(16, 8, generator=g)
        out.append((x, x @ w + 0.01 * torch.randn(16, 1, generator=g)))
    return out


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def train(net: nn.Module, opt: torch.optim.Optimizer, batches: list, poison: int | None = None) -> list[float]:
    losses = []
    for step, (x, y) in enumerate(batches):
        if step == poison:
            x = x.clone()
            x[0, 0] = float("nan")
        opt.zero_grad()
        loss = F.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def watched(net: nn.Module, opt: torch.optim.Optimizer, run: Callable[[], list[float]], heal: bool = True,
            **options: float) -> tuple[list[float], list, list]:
    """The run under watch (with the healer installed as `run --heal` would); its losses, healed
    findings and healed events."""
    with torchdoctor.watch(net, opt, print_report=False, config=Config()) as doctor:
        assert doctor.recorder is not None
        healer = Healer(doctor.recorder.timeline, doctor.recorder.errors, **options).install() if heal else None
        try:
            losses = run()
        finally:
            if healer is not None:
                healer.remove()
    assert doctor.report is not None
    tl = doctor.report.timeline
    assert not tl.internal_errors
    return losses, healed.run(tl, {}), tl.events_of("healed")


def finite(net: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in net.parameters())


def test_without_heal_a_poisoned_batch_makes_the_weights_nan():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    _, found, events = watched(net, opt, lambda: train(net, opt, data(), poison=5), heal=False)
    assert not finite(net) and found == [] and events == []


def test_heal_skips_the_poisoned_step_and_the_run_trains_on():
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses, found, events = watched(net, opt, lambda: train(net, opt, data(), poison=5))
    assert finite(net)
    assert math.isnan(losses[5]) and losses[-1] < losses[0] / 2
    (event,) = events
    assert event.step == 5 and event.data["action"] == "skip_step"
    assert event.data["before"] == "non-finite gradients" and event.data["after"] == "step skipped"
    assert event.data["nonfinite_params"] and event.data["nonfinite_params"][0].endswith("weight")
    (finding,) = found
    assert finding.code == "healed" and finding.severity is Severity.INFO and finding.step == 5
    assert finding.evidence["action"] == "skip_step" and finding.evidence["step"] == 5
    assert finding.evidence["before"] == "non-finite gradients" and finding.evidence["after"] == "step skipped"
    assert "skipped step 5" in finding.title
    # Adam's step count did not advance for the skipped step (grad None: the optimizer passes over it)
    assert all(int(opt.state[p]["step"]) == STEPS - 1 for p in net.parameters())


def test_a_run_gone_to_nan_at_a_huge_lr_is_rolled_back_with_the_lr_lowered():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=3.0)
    batches = data(60)
    first = [p.detach().clone() for p in net.parameters()]
    losses, found, events = watched(net, opt, lambda: train(net, opt, batches))
    rollbacks = [e for e in events if e.data["action"] == "rollback"]
    assert rollbacks, [e.data for e in events]
    back = rollbacks[0].data
    assert back["to_step"] == 0 and back["lr_before"] == 3.0 and math.isclose(back["lr_after"], 0.3)
    assert finite(net) and math.isfinite(losses[-1]) and losses[-1] < losses[0]
    assert opt.param_groups[0]["lr"] < 3.0
    assert any(not math.isfinite(v) or v > 4 * losses[0] for v in losses)  # it did blow up before the rollback
    assert not all(torch.equal(a, b) for a, b in zip(first, net.parameters(), strict=True))  # and trained after
    rolled = [f for f in found if f.evidence["action"] == "rollback"]
    assert rolled and rolled[0].severity is Severity.INFO
    assert rolled[0].evidence["lr_before"] == 3.0 and rolled[0].fixes[0].params == {"lr": back["lr_after"]}


def test_a_healthy_run_is_bit_identical_with_heal_on():
    plain_net = model()
    plain_opt = torch.optim.Adam(plain_net.parameters(), lr=0.01)
    train(plain_net, plain_opt, data())
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    _, found, events = watched(net, opt, lambda: train(net, opt, data()), every=5)  # copies taken, never used
    assert found == [] and events == []
    for a, b in zip(plain_net.parameters(), net.parameters(), strict=True):
        assert torch.equal(a, b)
    for p, q in zip(plain_net.parameters(), net.parameters(), strict=True):
        assert torch.equal(plain_opt.state[p]["exp_avg_sq"], opt.state[q]["exp_avg_sq"])


def test_an_optimizer_the_recorder_did_not_measure_is_checked_by_the_healer():
    """Without a fresh step record (a second optimizer in one step), the healer reads the gradients."""
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    tl = Timeline()
    healer = Healer(tl).install()
    try:
        train(net, opt, data(8), poison=3)
    finally:
        healer.remove()
    assert finite(net)
    (event,) = tl.events_of("healed")
    assert event.step == 3 and event.data["action"] == "skip_step"
    assert event.data["nonfinite_params"] == ["param0", "param1", "param2", "param3"]


def test_run_heal_from_the_command_line_skips_the_poisoned_step_and_says_so(tmp_path):
    """`torchdoctor run --heal`: the step with NaN gradients is skipped, the script ends with finite
    weights, and the healed finding is printed without -v (never silent) and kept in the JSON."""
    import json

    from tests.conftest import SCRIPTS, cli

    out = tmp_path / "run.json"
    result = cli("run", "--heal", "--json", str(out), str(SCRIPTS / "poisoned_batch.py"))
    assert result.returncode == 0, result.stderr
    assert "final loss nan" not in result.stdout
    assert "healed · step 5" in result.stderr and "--heal skipped step 5" in result.stderr
    healed = [f for f in json.loads(out.read_text())["findings"] if f["code"] == "healed"]
    assert healed and healed[0]["severity"] == "info" and healed[0]["evidence"]["action"] == "skip_step"


def test_a_gradient_spike_is_clipped_at_twice_the_recent_median():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    batches = data(40)
    x, y = batches[20]
    batches[20] = (x * 300.0, y * 300.0)  # one wild batch: its gradient is hundreds of times the others'
    losses, found, events = watched(net, opt, lambda: train(net, opt, batches))
    clips = [e for e in events if e.data["action"] == "clip"]
    assert [e.step for e in clips] == [20]
    data_ = clips[0].data
    assert data_["grad_norm"] > 10 * data_["median"] and math.isclose(data_["max_norm"], 2 * data_["median"])
    assert finite(net) and math.isfinite(losses[-1])
    (f,) = [f for f in found if f.evidence["action"] == "clip"]
    assert f.fixes[0].action == "clip_gradients" and f.fixes[0].params["max_norm"] == data_["max_norm"]


def test_a_loss_climbing_past_four_times_its_start_is_rolled_back_before_it_goes_nan():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.6)  # finite but climbing: no NaN needed
    losses, found, events = watched(net, opt, lambda: train(net, opt, data(40)), every=5)
    backs = [e for e in events if e.data["action"] == "rollback"]
    assert backs and "4x its start" in backs[0].data["before"]
    assert math.isfinite(losses[-1]) and losses[-1] < losses[0]


def test_the_copy_goes_to_ram_off_a_gpu_and_restores_the_exact_state():
    from torchdoctor.heal.snapshot import Snapshot, copy_device

    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    train(net, opt, data(5))
    assert copy_device(list(net.parameters()), opt.state_dict()) == torch.device("cpu")
    snap = Snapshot(opt, 5)
    weights = [p.detach().clone() for p in net.parameters()]
    moments = [opt.state[p]["exp_avg"].clone() for p in net.parameters()]
    train(net, opt, data(5))  # move on, then come back
    snap.restore(opt)
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters(), strict=True))
    assert all(torch.equal(m, opt.state[p]["exp_avg"]) for m, p in zip(moments, net.parameters(), strict=True))
