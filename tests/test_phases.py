"""Training and validation told apart in unchanged scripts: each test runs a real script that
records its own validation numbers, and checks that torchdoctor saw the same ones."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import torchdoctor
from tests.conftest import run_script
from torchdoctor.jsonreport import to_dict

COMMON = """
import json, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
x = torch.randn(240, 10)
y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
train = DataLoader(TensorDataset(x[:160], y[:160]), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(x[160:], y[160:]), batch_size=32)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
seen = []
"""


def run_with(write_script, tmp_path, body: str):
    path = write_script(COMMON + textwrap.dedent(body))
    out = tmp_path / "seen.json"
    result = run_script(path, str(out))
    assert result.status == 0
    return result.report.timeline, json.loads(out.read_text())


def test_validation_with_a_loss_module_under_no_grad(write_script, tmp_path):
    tl, seen = run_with(write_script, tmp_path, """
        crit = nn.CrossEntropyLoss()
        for epoch in range(3):
            model.train()
            for xb, yb in train:
                opt.zero_grad(); crit(model(xb), yb).backward(); opt.step()
            model.eval()
            total, correct = 0.0, 0
            with torch.no_grad():
                for xb, yb in val:
                    out = model(xb)
                    total += crit(out, yb).item() * len(xb)
                    correct += (out.argmax(1) == yb).sum().item()
            seen.append([total / 80, correct / 80])
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    val = tl.validation()
    assert [e.epoch for e in val] == [0, 1, 2]
    assert [e.step for e in val] == [5, 10, 15]
    assert [e.samples for e in val] == [80] * 3 and all(e.source == "loss" for e in val)
    assert [e.loss for e in val] == pytest.approx([s[0] for s in seen], rel=1e-5)
    assert [e.accuracy for e in val] == pytest.approx([s[1] for s in seen])
    assert tl.train_loss_fn == "cross_entropy"
    # training accuracy is sampled on the update-ratio schedule: the first 3 steps, then every 10th
    assert [r.step for r in tl.steps if r.accuracy is not None] == [0, 1, 2, 10]


def test_validation_under_inference_mode_with_a_functional_loss(write_script, tmp_path):
    tl, seen = run_with(write_script, tmp_path, """
        for epoch in range(2):
            for xb, yb in train:
                opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            with torch.inference_mode():
                losses = [F.cross_entropy(model(xb), yb, reduction="sum").item() for xb, yb in val]
            seen.append(sum(losses) / 80)
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    assert [e.loss for e in tl.validation()] == pytest.approx(seen, rel=1e-5)


def test_validation_written_by_hand_is_measured_with_the_training_loss(write_script, tmp_path):
    """The script computes no loss on its validation forwards (only accuracy, by hand): the
    batches are (input, target) pairs, so the training loss is applied to them."""
    tl, seen = run_with(write_script, tmp_path, """
        for epoch in range(2):
            for xb, yb in train:
                opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            model.eval()
            with torch.no_grad():
                outs = [(model(xb), yb) for xb, yb in val]
            model.train()
            nll = sum(-torch.log_softmax(o, 1).gather(1, t[:, None]).sum().item() for o, t in outs)
            seen.append(nll / 80)
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    val = tl.validation()
    assert [e.source for e in val] == ["derived", "derived"]
    assert [e.loss for e in val] == pytest.approx(seen, rel=1e-5)


def test_mse_regression_validated_by_hand_on_tensors_is_not_guessed(write_script, tmp_path):
    tl, _ = run_with(write_script, tmp_path, """
        xr, yr = torch.randn(64, 10), torch.randn(64, 2)
        for epoch in range(2):
            for xb, yb in train:
                opt.zero_grad(); F.mse_loss(model(xb), F.one_hot(yb, 2).float()).backward(); opt.step()
            with torch.no_grad():
                seen.append(((model(xr) - yr) ** 2).mean().item())
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    assert tl.validation() == []
    assert tl.eval_forwards == 2


def test_eval_mode_without_no_grad_is_still_validation(write_script, tmp_path):
    tl, seen = run_with(write_script, tmp_path, """
        for epoch in range(2):
            model.train()
            for xb, yb in train:
                opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            model.eval()
            seen.append(sum(F.cross_entropy(model(xb), yb).item() * len(xb) for xb, yb in val) / 80)
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    assert [e.loss for e in tl.validation()] == pytest.approx(seen, rel=1e-5)


def test_fine_tuning_in_eval_mode_is_training(write_script, tmp_path):
    """model.eval() while training (frozen BatchNorm statistics): the losses are backwarded, so
    they are training, and no validation is invented."""
    tl, seen = run_with(write_script, tmp_path, """
        model.eval()
        for xb, yb in train:
            opt.zero_grad(); loss = F.cross_entropy(model(xb), yb); loss.backward(); opt.step()
            seen.append(loss.item())
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    assert tl.validation() == []
    assert [r.loss for r in tl.steps] == seen


def test_the_training_set_evaluated_for_accuracy_is_not_validation(write_script, tmp_path):
    tl, seen = run_with(write_script, tmp_path, """
        for epoch in range(2):
            model.train()
            for xb, yb in train:
                opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            model.eval()
            with torch.no_grad():
                train_loss = sum(F.cross_entropy(model(xb), yb, reduction="sum").item() for xb, yb in train)
                val_loss = sum(F.cross_entropy(model(xb), yb, reduction="sum").item() for xb, yb in val)
            seen.append(val_loss / 80)
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    assert [e.loader for e in tl.evaluations] == ["train", "loader 2", "train", "loader 2"]
    assert [e.loss for e in tl.validation()] == pytest.approx(seen, rel=1e-5)


def test_a_final_test_set_is_not_part_of_the_validation_curve(write_script, tmp_path):
    tl, seen = run_with(write_script, tmp_path, """
        test = DataLoader(TensorDataset(torch.randn(48, 10), torch.randint(0, 2, (48,))), batch_size=16)
        for epoch in range(3):
            for xb, yb in train:
                opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            with torch.no_grad():
                seen.append(sum(F.cross_entropy(model(xb), yb, reduction="sum").item() for xb, yb in val) / 80)
        with torch.no_grad():
            [F.cross_entropy(model(xb), yb) for xb, yb in test]
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    assert len(tl.evaluations) == 4 and tl.evaluations[-1].loader == "loader 3"
    assert [e.loss for e in tl.validation()] == pytest.approx(seen, rel=1e-5)


def test_update_ratio_is_sampled_and_zero_when_nothing_moves(write_script, tmp_path):
    tl, _ = run_with(write_script, tmp_path, """
        frozen = torch.optim.SGD(model.parameters(), lr=0.0)
        for epoch in range(3):
            for xb, yb in train:
                frozen.zero_grad(); F.cross_entropy(model(xb), yb).backward(); frozen.step()
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    sampled = [r.step for r in tl.steps if r.update_ratio is not None]
    assert sampled == [0, 1, 2, 10]
    assert all(r.update_ratio == 0.0 for r in tl.steps if r.update_ratio is not None)
    assert tl.optimizer_hparams["lr"] == 0.0


def test_update_ratio_matches_the_weights_before_and_after(write_script, tmp_path):
    tl, seen = run_with(write_script, tmp_path, """
        for xb, yb in train:
            before = [p.detach().clone() for p in model.parameters()]
            opt.zero_grad(); F.cross_entropy(model(xb), yb).backward(); opt.step()
            moved = sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)) ** 0.5
            size = sum((b ** 2).sum() for b in before) ** 0.5
            seen.append((moved / size).item())
        json.dump(seen, open(sys.argv[1], "w"))
    """)
    measured = [r.update_ratio for r in tl.steps[:3]]
    assert measured == pytest.approx(seen[:3], rel=1e-4)
    first, last = tl.layers[0].name, tl.layers[-1].name
    assert (first, last) == ("0", "3")
    assert all(v is not None and v > 0 for v in tl.steps[0].layer_update_ratios)


def test_watch_takes_logged_validation_over_what_it_inferred():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = DataLoader(TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,))), batch_size=16)
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        for epoch in range(3):
            for xb, yb in data:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            with torch.no_grad():
                F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,)))
            doctor.log(val_loss=1.0 - 0.1 * epoch, val_acc=0.5 + 0.1 * epoch)
    val = doctor.report.timeline.validation()
    assert [(e.loss, e.accuracy, e.source) for e in val] == [
        (1.0, 0.5, "log"), (pytest.approx(0.9), pytest.approx(0.6), "log"), (pytest.approx(0.8), 0.7, "log")]
    assert [e.epoch for e in val] == [0, 1, 2]
    data_json = to_dict(doctor.report)["metrics"]
    assert data_json["loss"]["val"][0] == [0, 1.0] and data_json["accuracy"]["val"][2][1] == pytest.approx(0.7)


def test_fit_reports_its_validation_once_per_epoch():
    torch.manual_seed(0)
    x = torch.randn(96, 6)
    y = (x[:, 0] > 0).long()
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16)
    val = DataLoader(TensorDataset(x[64:], y[64:]), batch_size=16)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    result = torchdoctor.fit(model, train, opt, nn.CrossEntropyLoss(), epochs=3, val_loader=val, print_report=False)
    validation = result.report.timeline.validation()
    assert [e.loss for e in validation] == pytest.approx([row["val_loss"] for row in result.history])
    assert [e.accuracy for e in validation] == pytest.approx([row["val_acc"] for row in result.history])


def test_a_model_too_large_to_copy_is_not_measured(monkeypatch):
    """The weight copy for the update ratio is skipped above MAX_COPY_BYTES: a large model's
    memory is not doubled on sampled steps."""
    from torchdoctor.probes import updates

    monkeypatch.setattr(updates, "MAX_COPY_BYTES", 40)  # the model holds 72 bytes
    torch.manual_seed(0)
    model = nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(torch.randn(4, 8)), torch.randint(0, 2, (4,))).backward()
            opt.step()
    assert [r.update_ratio for r in doctor.report.timeline.steps] == [None, None, None]


def test_an_evaluation_pass_is_read_back_at_the_next_step_not_held_to_the_end():
    """Values stay on the device only until training resumes: a long run does not pile them up."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    counts = []
    with torchdoctor.watch(model, opt, print_report=False) as doctor:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()  # the training loss closes the pass before it
            opt.step()
            counts.append(len(doctor.recorder.timeline.evaluations))
            with torch.no_grad():
                F.cross_entropy(model(x), y)
    assert counts == [0, 1, 2] and len(doctor.report.timeline.evaluations) == 3
