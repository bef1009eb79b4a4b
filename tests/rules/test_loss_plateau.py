import math

import pytest

from tests.rules.timelines import Event, decay, findings, make_dynamics_timeline, noisy_curve
from torchdoctor.findings import Severity
from torchdoctor.rules import NotEvaluated


def flat(n: int = 300, level: float = 2.3, noise: float = 0.03, seed: int = 0) -> list[float]:
    return noisy_curve([level] * n, noise, seed)


def test_a_learning_rate_far_too_small_is_told_from_the_update_ratio():
    # examples/loss_plateau.py --lr 1e-6: SGD moves the weights by ~1e-7 of their size per step.
    tl = make_dynamics_timeline(flat(), lr=1e-6, update_ratios=1.2e-7)
    (finding,) = findings("loss_plateau", tl)
    assert finding.severity == Severity.WARNING and finding.step == 0
    ev = finding.evidence
    assert ev["cause"] == "tiny_updates" and ev["update_ratio"] == pytest.approx(1.2e-7)
    assert abs(ev["improvement"]) < 0.05 and ev["lr"] == 1e-6
    assert ev["layer_update_ratios"][0]["layer"] == "fc1"
    (fix,) = finding.fixes
    assert fix.action == "raise_learning_rate"
    assert fix.params["lr"] == pytest.approx(1e-3), "the ratio asks for ~8000x: capped at 1000x"
    assert "capped at 1000x" in fix.text and "lr=0.001" in fix.snippet


def test_the_raised_learning_rate_follows_the_ratio_when_under_the_cap():
    tl = make_dynamics_timeline(flat(), lr=1e-4, update_ratios=4e-6)
    (finding,) = findings("loss_plateau", tl)
    assert finding.fixes[0].params["lr"] == pytest.approx(0.025)  # 1e-4 * (1e-3 / 4e-6)
    assert "capped" not in finding.fixes[0].text


def test_weights_that_never_move_point_at_the_optimizer():
    # The stale-model bug: the model was re-created after the optimizer took its parameters.
    tl = make_dynamics_timeline(flat(), lr=0.01, update_ratios=0.0, optimizer="Adam")
    (finding,) = findings("loss_plateau", tl)
    assert finding.evidence["cause"] == "not_updated" and finding.evidence["zero_update_fraction"] == 1.0
    (fix,) = finding.fixes
    assert fix.action == "check_optimizer_params"
    assert "torch.optim.Adam(model.parameters(), lr=0.01)" in fix.snippet
    assert "optimizer.param_groups" in fix.snippet


def test_a_learning_rate_of_zero_is_named():
    tl = make_dynamics_timeline(flat(), lr=0.0, update_ratios=0.0)
    (finding,) = findings("loss_plateau", tl)
    assert "learning rate is 0" in finding.title
    assert finding.fixes[0].action == "raise_learning_rate" and finding.fixes[0].params["lr"] == 0.01


def test_weights_that_move_without_the_loss_responding_is_info():
    # Labels shuffled apart from their inputs: the optimizer works, the loss cannot fall.
    tl = make_dynamics_timeline(flat(), lr=0.01, update_ratios=2e-3)
    (finding,) = findings("loss_plateau", tl)
    assert finding.severity == Severity.INFO
    assert finding.evidence["cause"] == "loss_not_responding"
    assert finding.fixes[0].action == "check_data_and_loss" and "next(iter(train_loader))" in finding.fixes[0].snippet


def test_without_update_ratios_the_plateau_is_reported_without_a_cause():
    (finding,) = findings("loss_plateau", make_dynamics_timeline(flat()))
    assert finding.severity == Severity.WARNING
    assert finding.evidence["cause"] == "unknown" and finding.evidence["update_ratio"] is None
    assert "not measured" in finding.title


def test_too_few_steps_is_not_evaluated():
    with pytest.raises(NotEvaluated, match="needs at least 50"):
        findings("loss_plateau", make_dynamics_timeline(flat(40)))


def test_a_learning_rate_still_warming_up_is_not_evaluated():
    tl = make_dynamics_timeline(flat(200), lr=lambda i: 1e-5 * (i + 1), update_ratios=1e-7)
    with pytest.raises(NotEvaluated, match="warming up"):
        findings("loss_plateau", tl)


def test_a_nan_run_is_left_to_nonfinite_loss():
    tl = make_dynamics_timeline(flat() + [math.nan], update_ratios=1e-7)
    tl.events.append(Event("nonfinite_loss", 300, None, {"value": math.nan, "origin": "loss"}))
    assert findings("loss_plateau", tl) == []


def test_a_diverging_run_is_left_to_divergence():
    losses = noisy_curve([2.3 * (1 + 2 * i / 300) for i in range(300)], 0.05)  # never below its start
    tl = make_dynamics_timeline(losses, update_ratios=1e-2)
    assert findings("loss_plateau", tl) == []
    assert findings("divergence", tl)


# -- controls: runs that learn must stay clean -------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [50, 400, 2000])
def test_noisy_runs_that_learn_stay_clean(seed, n):
    losses = noisy_curve(decay(n, 2.3, 0.3, n / 5), 0.4, seed)
    assert findings("loss_plateau", make_dynamics_timeline(losses, update_ratios=1e-7)) == []


@pytest.mark.parametrize("seed", range(8))
def test_a_run_that_converged_in_its_first_steps_stays_clean(seed):
    losses = noisy_curve(decay(1000, 2.3, 0.5, 2), 0.2, seed)  # learned within ~10 steps, flat after
    assert findings("loss_plateau", make_dynamics_timeline(losses, update_ratios=1e-3)) == []


@pytest.mark.parametrize("seed", range(8))
def test_a_slow_steady_learner_stays_clean(seed):
    losses = noisy_curve(decay(600, 2.3, 1.6, 300), 0.2, seed)  # 20% lower over the run
    assert findings("loss_plateau", make_dynamics_timeline(losses)) == []


@pytest.mark.parametrize("seed", range(5))
def test_a_long_run_converged_after_a_big_drop_stays_clean(seed):
    losses = noisy_curve(decay(3000, 2.3, 0.05, 100), 0.3, seed)
    assert findings("loss_plateau", make_dynamics_timeline(losses, update_ratios=1e-3)) == []


def test_tiny_updates_at_an_ordinary_learning_rate_point_at_the_gradients():
    tl = make_dynamics_timeline(flat(), lr=0.05, update_ratios=1e-7)
    (finding,) = findings("loss_plateau", tl)
    assert finding.fixes[0].action == "check_gradient_flow" and "gradients are tiny" in finding.title


def test_a_raised_learning_rate_stops_at_the_top_of_the_usual_range():
    tl = make_dynamics_timeline(flat(), lr=1e-4, update_ratios=1e-8, optimizer="Adam")
    (fix,) = findings("loss_plateau", tl)[0].fixes
    assert fix.params["lr"] == 3e-3 and "lr=0.003" in fix.snippet
