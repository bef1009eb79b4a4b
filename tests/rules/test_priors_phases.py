"""Judgment from the run's own priors and phases, on hand-made timelines: a loss that blows up at
step 1 or ends above its start diverged whatever its first window looked like; a loss at chance
is not learning; each phase (a new optimizer, a new head) is judged on its own; symptoms that hurt
nothing are info at most."""

from __future__ import annotations

import math

from tests.rules.timelines import (
    activation_steps,
    decay,
    findings,
    make_dynamics_timeline,
    make_model_timeline,
    make_timeline,
    noisy_curve,
    sequential_types,
)
from torchdoctor.findings import Severity
from torchdoctor.timeline import LossPrior, Phase, Timeline


def run(losses: list[float], **kw) -> Timeline:
    return make_dynamics_timeline(losses, **kw)


# -- divergence: priors --------------------------------------------------------------------------
def test_a_step_one_blow_up_that_settles_above_its_start_is_divergence():
    """resnet18 at SGD lr=5.0: 2.4 -> 177 at step 1, then down to ~14, never back to 2.4."""
    losses = [2.4, 177.0] + [14 + 160 * math.exp(-i / 5) for i in range(60)]
    (f,) = findings("divergence", run(losses, lr=5.0))
    assert f.severity is Severity.ERROR and f.step == 1
    assert f.evidence["criterion"] == "blowup" and f.evidence["how"] == "jump"
    assert f.fixes[0].action == "lower_learning_rate" and f.fixes[0].params == {"lr": 0.1, "current_lr": 5.0}


def test_a_blow_up_that_lands_at_chance_is_divergence_and_goes_back_to_a_usual_lr():
    """Adadelta at lr 100: 2.30 -> 52,607 at step 1, then flat at chance for the rest of the run."""
    tl = run([2.3, 52607.0] + [2.30] * 60, lr=100.0, optimizer="Adadelta")
    (f,) = findings("divergence", tl)
    assert f.step == 1 and f.severity is Severity.ERROR and "no better than its start" in f.title
    assert f.fixes[0].params["lr"] == 1.0  # Adadelta's usual learning rate; a tenth (10) still blows up


def test_a_blow_up_the_run_recovered_from_hurt_nothing():
    losses = [2.3, 200.0] + [2.0 * math.exp(-i / 10) + 0.1 for i in range(60)]
    assert findings("divergence", run(losses)) == []


def test_a_one_step_blow_up_needs_no_history():
    (f,) = findings("divergence", run([2.3, 900.0, 400.0, 300.0, 250.0]))
    assert f.step == 1 and f.evidence["criterion"] == "blowup"


def test_an_update_larger_than_the_weights_that_leaves_the_loss_up_is_a_blow_up():
    losses = [2.3, 6.0, 7.5, 8.0] + [8.0] * 40
    tl = run(losses, update_ratios=lambda s: 12.5 if s == 0 else 1e-3)
    (f,) = findings("divergence", tl)
    assert f.evidence["how"] == "update" and f.step == 1 and f.evidence["factor"] == 12.5


def test_a_loss_that_ends_above_its_start_diverged_though_its_first_window_was_high():
    losses = [2.3] + [40.0 * math.exp(-i / 8) + 9.0 for i in range(80)]
    (f,) = findings("divergence", run(losses))
    assert f.evidence["criterion"] in ("blowup", "above_start")
    assert f.severity is Severity.ERROR


def test_healthy_noisy_runs_and_a_hard_first_batch_stay_clean():
    clean = noisy_curve(decay(300, 2.3, 0.3, 60), 0.3, seed=3)
    assert findings("divergence", run(clean)) == []
    spiky = [2.3, 2.9] + decay(100, 2.2, 0.2, 20)  # a first batch 25% worse: no blow-up
    assert findings("divergence", run(spiky)) == []


# -- divergence: phases ------------------------------------------------------------------------
def two_phases(second: list[float]) -> Timeline:
    tl = run(decay(80, 2.3, 0.2, 15) + second)
    tl.phase_starts = [Phase(80, "new_optimizer")]
    return tl


def test_a_new_head_whose_loss_starts_high_again_is_no_divergence():
    """Pre-train, then freeze the backbone and train a new head on new classes: the loss jumps
    back up at the phase boundary and comes down again, to above the first phase's low."""
    second = decay(60, 3.0, 0.9, 15)
    tl = two_phases(second)
    assert findings("divergence", tl) == []
    tl.phase_starts = []  # judged as one run, the rise from 0.2 to 0.9 reads as a trend
    assert [f.evidence["criterion"] for f in findings("divergence", tl)] == ["trend"]


def test_a_second_phase_that_really_diverges_is_found_in_that_phase():
    second = [1.0] + [1.0 * 1.08 ** i for i in range(60)]
    (f,) = findings("divergence", two_phases(second))
    assert f.step >= 80 and f.evidence["phase"] == 2 and f.evidence["phase_reason"] == "new_optimizer"
    assert "phase 2 of 2, from step 80: a new optimizer" in f.title


def test_a_warm_restart_opens_a_phase():
    tl = run(decay(40, 2.3, 0.3, 10) * 3, lr=lambda s: 0.1 * (1 + math.cos(math.pi * (s % 40) / 40)) / 2 + 1e-4)
    assert [p.reason for p in tl.phases()] == ["start", "lr_restart", "lr_restart"]
    assert [p.step for p in tl.phases()] == [0, 40, 80]
    assert tl.phase_of(50)[0] == 1


# -- loss_plateau: priors --------------------------------------------------------------------------
def test_a_loss_that_stays_at_chance_with_moving_weights_is_a_warning():
    tl = run(noisy_curve([2.303] * 200, 0.01, seed=1), update_ratios=2e-3)
    tl.prior = LossPrior("cross_entropy", 10, chance=math.log(10))
    (f,) = findings("loss_plateau", tl)
    assert f.severity is Severity.WARNING and f.evidence["cause"] == "at_chance"
    assert f.evidence["chance_loss"] == math.log(10) and "ln(10)" in f.title
    tl.prior = LossPrior("cross_entropy", 10, chance=math.log(100))  # far from chance: a hard task, info
    assert findings("loss_plateau", tl)[0].severity is Severity.INFO


def test_updates_far_below_what_an_optimizer_moves_are_a_too_small_learning_rate():
    tl = run(noisy_curve(decay(200, 2.303, 2.27, 400), 0.01, seed=2), lr=1e-6, optimizer="Adam",
             update_ratios=2e-5)
    (f,) = findings("loss_plateau", tl)
    assert f.severity is Severity.WARNING and f.evidence["cause"] == "tiny_updates"
    assert f.fixes[0].action == "raise_learning_rate" and f.fixes[0].params["lr"] > 1e-6


# -- severity from consequence ---------------------------------------------------------------
def test_a_spike_within_the_runs_own_early_range_is_no_explosion():
    norms = [9.0] * 5 + [3.0] * 20 + [0.035] * 200 + [4.1] + [0.035] * 30
    assert findings("exploding_gradients", make_timeline(norms)) == []
    norms[225] = 40.0  # past anything the run had before
    (f,) = findings("exploding_gradients", make_timeline(norms))
    assert f.step == 225 and f.evidence["criterion"] == "spike"


def dead_run(dead_at: callable, losses: list[float]) -> Timeline:
    types = sequential_types("Linear", "ReLU", "Linear")
    tl = make_model_timeline(types, steps=len(losses))
    for rec, loss in zip(tl.steps, losses, strict=True):
        rec.loss = loss
    for step in activation_steps(len(losses) - 1):
        tl.habits.activations.append({"step": step, "module": "1", "type": "ReLU", "dead": dead_at(step), "units": 64})
    return tl


def test_units_dead_from_initialization_in_a_network_that_learns_are_info():
    (f,) = findings("dead_units", dead_run(lambda s: 36, decay(120, 2.3, 0.2, 20)))
    assert f.severity is Severity.INFO and not f.evidence["grew"] and f.evidence["loss_learning"]
    assert "dead from the first sample" in f.title


def test_units_that_die_during_the_run_are_a_warning():
    (f,) = findings("dead_units", dead_run(lambda s: 4 if s < 10 else 58, decay(120, 2.3, 0.2, 20)))
    assert f.severity is Severity.WARNING and f.evidence["grew"]


def test_dead_units_in_a_stalled_network_are_a_warning():
    (f,) = findings("dead_units", dead_run(lambda s: 36, [2.3] * 120))
    assert f.severity is Severity.WARNING and not f.evidence["loss_learning"]
