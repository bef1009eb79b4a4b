"""End to end, issue 18's training invariants: train_mode_missing, optimizer_no_update and
scheduler_misuse found on their faulty scripts and absent from the healthy twins (real tiny models
trained on CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

CALIBRATION = Path(__file__).parent / "calibration"
FAULTY, HEALTHY = CALIBRATION / "faulty", CALIBRATION / "healthy"
CODES = ("train_mode_missing", "optimizer_no_update", "scheduler_misuse")

LOOP = """
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
x = torch.randn(256, 8); y = (x[:, 0] > 0).long()
loader = DataLoader(TensorDataset(x, y), batch_size=32)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), {extra}nn.Linear(16, 2))
other = nn.Linear(8, 2)
optimizer = torch.optim.SGD({params}, lr={lr})
{setup}
for epoch in range(4):
    {epoch_start}
    for xb, yb in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    {epoch_end}
"""


def loop(extra: str = "", params: str = "model.parameters()", lr: str = "0.1", setup: str = "",
         epoch_start: str = "pass", epoch_end: str = "pass") -> str:
    return LOOP.format(extra=extra, params=params, lr=lr, setup=setup, epoch_start=epoch_start, epoch_end=epoch_end)


VALIDATE = "model.eval()\n    with torch.no_grad():\n        model(x)"


def found(report, code: str):
    return [f for f in report.findings if f.code == code]


# -- train_mode_missing --------------------------------------------------------------------------
def test_training_after_validation_in_eval_mode_is_found(run):
    result = run(FAULTY / "train_mode_after_validation.py")
    (finding,) = found(result.report, "train_mode_missing")
    assert finding.evidence["steps"] == 60 and finding.evidence["train_mode_steps"] == 20
    assert finding.step == 20 and finding.evidence["module_types"] == ["BatchNorm1d", "Dropout"]
    assert "model.train()" in finding.fixes[0].text


def test_model_train_after_validation_is_clean(run):
    result = run(FAULTY / "train_mode_after_validation.py", "--fixed")
    assert result.report.timeline.habits.eval_mode_steps == 0
    assert not found(result.report, "train_mode_missing")


def test_frozen_batchnorm_fine_tune_is_clean(run):
    result = run(HEALTHY / "frozen_bn_finetune.py")
    assert result.report.timeline.habits.train_mode_steps == 60
    assert not any(found(result.report, code) for code in CODES)


def test_a_model_without_dropout_or_batchnorm_left_in_eval_is_clean(run, write_script):
    result = run(write_script(loop(epoch_end=VALIDATE)))
    assert result.report.timeline.habits.eval_mode_steps == 24  # seen, but nothing behaves differently
    assert not found(result.report, "train_mode_missing")


def test_the_same_loop_with_dropout_is_found(run, write_script):
    result = run(write_script(loop(extra="nn.Dropout(0.2), ", epoch_end=VALIDATE)))
    assert len(found(result.report, "train_mode_missing")) == 1


# -- optimizer_no_update -------------------------------------------------------------------------
@pytest.mark.parametrize("args", [(), ("--in-place",)])
def test_zero_grad_between_backward_and_step_is_found(run, args):
    result = run(FAULTY / "zero_grad_before_step.py", *args)
    (finding,) = found(result.report, "optimizer_no_update")
    assert finding.evidence["why"] == "zero_grad() between backward() and step()"
    assert finding.evidence["no_update_steps"] == finding.evidence["steps"] == 36
    assert finding.evidence["optimizer"] == "SGD" and finding.step == 0


def test_zero_grad_before_the_forward_is_clean(run):
    assert not found(run(FAULTY / "zero_grad_before_step.py", "--fixed").report, "optimizer_no_update")


def test_a_learning_rate_of_0_is_found(run, write_script):
    (finding,) = found(run(write_script(loop(lr="0.0"))).report, "optimizer_no_update")
    assert finding.evidence["why"] == "learning rate 0"


def test_an_optimizer_over_parameters_no_loss_reaches_is_found(run, write_script):
    source = loop(params="other.parameters()")
    (finding,) = found(run(write_script(source)).report, "optimizer_no_update")
    assert finding.evidence["why"] == "every gradient None"


@pytest.mark.parametrize("script", ["grad_accumulation.py", "lbfgs_closure.py", "amp_gradscaler_cpu.py",
                                    "two_phase_finetune.py", "small_gan.py"])
def test_accumulation_lbfgs_gradscaler_finetune_and_gan_are_clean(run, script):
    report = run(HEALTHY / script).report
    assert not any(found(report, code) for code in CODES), [f.title for f in report.findings]


def test_a_warmup_from_lr_0_is_clean(run):
    result = run(HEALTHY / "cosine_per_batch.py", "--warmup")
    (entry,) = result.report.timeline.habits.no_update
    assert entry["no_update"] == 1  # step 0 only
    assert not any(found(result.report, code) for code in CODES)


# -- scheduler_misuse ----------------------------------------------------------------------------
@pytest.mark.parametrize(("scheduler", "key", "value"), [("step", "step_size", 40), ("cosine", "T_max", 120)])
def test_a_per_epoch_scheduler_stepped_per_batch_is_found(run, scheduler, key, value):
    result = run(FAULTY / "steplr_per_batch.py", "--scheduler", scheduler)
    (finding,) = found(result.report, "scheduler_misuse")
    assert finding.evidence["scheduler_steps"] == 120 and finding.evidence["batches_per_epoch"] == 20
    assert len(finding.evidence["lr_curve"]) == 8
    assert finding.fixes[0].params[key] == value and "once per epoch" in finding.fixes[0].text


def test_stepped_once_per_epoch_is_clean(run):
    assert not found(run(FAULTY / "steplr_per_batch.py", "--fixed").report, "scheduler_misuse")


@pytest.mark.parametrize("script", ["cosine_per_batch.py", "one_cycle.py", "steplr_fit.py", "reduce_on_plateau.py",
                                    "char_gru_warmup.py"])
def test_schedulers_used_as_designed_are_clean(run, script):
    assert not found(run(HEALTHY / script).report, "scheduler_misuse")


def test_scheduler_step_before_optimizer_step_is_found(run, write_script):
    source = loop(setup="scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)",
                  epoch_start="scheduler.step()")
    (finding,) = found(run(write_script(source)).report, "scheduler_misuse")
    assert finding.evidence["why"] == "scheduler.step() before optimizer.step()"


def test_a_scheduler_bound_to_an_optimizer_that_never_steps_is_found(run, write_script):
    source = loop(setup="idle = torch.optim.SGD(model.parameters(), lr=0.1)\n"
                        "scheduler = torch.optim.lr_scheduler.StepLR(idle, step_size=2)",
                  epoch_end="scheduler.step()")
    (finding,) = found(run(write_script(source)).report, "scheduler_misuse")
    assert finding.evidence["why"] == "optimizer never steps" and finding.evidence["scheduler_steps"] == 4


GAN_SAMPLING = """
import torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
G = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8))
D = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.Adam(D.parameters(), lr=1e-3)
G.eval()  # a trained generator, only sampled
for step in range(30):
    with torch.no_grad():
        fake = G(torch.randn(32, 4))
    real = torch.randn(32, 8) + 2
    optimizer.zero_grad()
    logits = D(torch.cat([real, fake]))
    target = torch.cat([torch.ones(32, 1), torch.zeros(32, 1)])
    F.binary_cross_entropy_with_logits(logits, target).backward()
    optimizer.step()
"""


def test_a_generator_sampled_in_eval_under_no_grad_is_clean(run, write_script):
    result = run(write_script(GAN_SAMPLING))
    assert result.report.timeline.habits.eval_mode_steps == 0
    assert not any(found(result.report, code) for code in CODES)
