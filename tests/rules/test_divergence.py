import math

import pytest

from tests.rules.timelines import Event, decay, findings, make_dynamics_timeline, noisy_curve
from torchdoctor.findings import Severity
from torchdoctor.rules import NotEvaluated


def dips_then_climbs(n: int, factor: float, low_at: float = 0.3, noise: float = 0.1, seed: int = 0) -> list[float]:
    """Learns down to a low at `low_at` of the run, then climbs back linearly to `factor` times it."""
    k = int(low_at * n)
    down = decay(k, 2.3, 0.5, k / 4)
    up = [down[-1] * (1 + (factor - 1) * i / (n - k)) for i in range(1, n - k + 1)]
    return noisy_curve(down + up, noise, seed)


def test_a_loss_climbing_back_to_two_and_a_half_times_its_low_is_found():
    tl = make_dynamics_timeline(dips_then_climbs(600, 2.5), lr=0.1)
    (finding,) = findings("divergence", tl)
    assert finding.severity == Severity.ERROR
    ev = finding.evidence
    assert ev["criterion"] == "trend"
    assert 2.0 <= ev["ratio"] <= 3.2
    assert 120 <= ev["min_at_steps"][1] <= 240, "the low is where the descent ended (step 180)"
    assert ev["min_at_steps"][1] < finding.step < 599, "the step is where the climb crossed the threshold"
    assert ev["lr"] == 0.1 and len(ev["loss_history"]) <= 61
    actions = [f.action for f in finding.fixes]
    assert actions[:2] == ["lower_learning_rate", "add_warmup"]
    assert finding.fixes[0].params["lr"] == pytest.approx(0.02)
    assert finding.fixes[1].params["total_iters"] == 100  # 5% of 600 steps is 30, but at least 100
    assert "decay_learning_rate" in actions, "a constant learning rate: decay it"


def test_the_lower_learning_rate_is_derived_from_the_one_in_force_at_the_low():
    # Warm-up to a peak too high: the loss was lowest while the learning rate was still 0.05.
    def lr(step: int) -> float:
        return 0.01 + 0.4 * min(step, 500) / 500

    tl = make_dynamics_timeline(dips_then_climbs(500, 3.0, low_at=0.2), lr=lr)
    (finding,) = findings("divergence", tl)
    lowest_step = finding.evidence["min_at_steps"][1]
    assert finding.fixes[0].params["current_lr"] == pytest.approx(lr(lowest_step))
    assert "learning rate rose" in finding.title
    actions = [f.action for f in finding.fixes]
    assert "add_warmup" not in actions, "the run already warms up"
    assert "decay_learning_rate" not in actions, "the learning rate was not constant"


def test_gradient_clipping_is_derived_from_the_steps_before_the_low():
    tl = make_dynamics_timeline(dips_then_climbs(300, 3.0))
    for rec in tl.steps:
        rec.grad_norm = 1.5 if rec.step < 90 else 40.0
    (finding,) = findings("divergence", tl)
    (clip,) = [f for f in finding.fixes if f.action == "clip_gradients"]
    assert clip.params["max_norm"] == pytest.approx(3.0)


def test_wild_oscillation_without_progress_is_found():
    losses = noisy_curve([2.3 * (3.0 if i % 2 else 0.6) for i in range(200)], 0.3, seed=1)
    (finding,) = findings("divergence", make_dynamics_timeline(losses, lr=0.5))
    assert finding.evidence["criterion"] == "oscillation"
    assert finding.evidence["volatility"] >= 0.8
    assert finding.fixes[0].params["lr"] == pytest.approx(0.05)  # 10x lower for a run that never settled


def test_a_short_climb_at_the_very_end_is_not_yet_a_trend():
    losses = noisy_curve(decay(400, 2.3, 0.4, 60), 0.1) + [1.5] * 25  # one window high, not three
    assert findings("divergence", make_dynamics_timeline(losses)) == []


def test_a_nan_run_is_left_to_nonfinite_loss():
    tl = make_dynamics_timeline(dips_then_climbs(300, 4.0) + [math.nan] * 5)
    tl.events.append(Event("nonfinite_loss", 300, None, {"value": math.nan, "origin": "loss"}))
    assert findings("divergence", tl) == []


def test_only_the_finite_part_before_a_non_finite_loss_is_judged():
    tl = make_dynamics_timeline(dips_then_climbs(300, 3.0) + [math.inf, 0.1, 0.1])
    (finding,) = findings("divergence", tl)
    assert finding.evidence["loss_history"][-1][0] == 299


def test_too_few_steps_is_not_evaluated():
    with pytest.raises(NotEvaluated, match="needs at least 30"):
        findings("divergence", make_dynamics_timeline([1.0, 2.0, 4.0] * 5))


def test_negative_losses_are_not_evaluated():
    with pytest.raises(NotEvaluated, match="negative"):
        findings("divergence", make_dynamics_timeline([-1.0 - 0.01 * i for i in range(100)]))


# -- controls: healthy runs that must stay clean ---------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [60, 400, 3000])
def test_small_noisy_batches_that_learn_stay_clean(seed, n):
    losses = noisy_curve(decay(n, 2.3, 0.3, n / 5), 0.4, seed)  # +-40% per batch
    assert findings("divergence", make_dynamics_timeline(losses)) == []


@pytest.mark.parametrize("seed", range(8))
def test_a_converged_run_wobbling_around_a_tiny_loss_stays_clean(seed):
    losses = noisy_curve(decay(1000, 2.3, 1e-4, 30), 1.0, seed)  # +-100% of 1e-4 at the end
    assert findings("divergence", make_dynamics_timeline(losses)) == []


@pytest.mark.parametrize("seed", range(5))
def test_a_converged_run_at_a_moderate_loss_stays_clean(seed):
    losses = noisy_curve(decay(500, 2.3, 0.8, 25), 0.3, seed)
    assert findings("divergence", make_dynamics_timeline(losses)) == []


@pytest.mark.parametrize("seed", range(5))
def test_step_and_cosine_schedules_stay_clean(seed):
    n = 900
    step_lr = [0.1 if i < 300 else 0.01 if i < 600 else 0.001 for i in range(n)]
    step_losses = [2.3 * (1.0 if i < 300 else 0.5 if i < 600 else 0.3) * (0.6 + 0.4 * math.exp(-(i % 300) / 50))
                   for i in range(n)]
    tl = make_dynamics_timeline(noisy_curve(step_losses, 0.2, seed), lr=lambda i: step_lr[i])
    assert findings("divergence", tl) == []
    cosine = lambda i: 0.05 * (1 + math.cos(math.pi * i / n)) / 2  # noqa: E731
    tl = make_dynamics_timeline(noisy_curve(decay(n, 2.3, 0.2, 150), 0.2, seed), lr=cosine)
    assert findings("divergence", tl) == []


@pytest.mark.parametrize("seed", range(5))
def test_warm_restarts_ending_at_the_end_of_a_cycle_stay_clean(seed):
    # SGDR: the loss jumps at each restart and ends each cycle lower. A run cut off just after a
    # restart is debatable (documented); one that ends with its cycle is clean.
    cycle = 200
    losses = [(1.6 - 0.3 * (i // cycle)) * (0.5 + 0.5 * math.exp(-(i % cycle) / 40)) for i in range(3 * cycle)]
    tl = make_dynamics_timeline(noisy_curve(losses, 0.15, seed),
                                lr=lambda i: 0.05 * (1 + math.cos(math.pi * (i % cycle) / cycle)) / 2)
    assert findings("divergence", tl) == []


def test_a_single_spike_is_not_divergence():
    losses = noisy_curve(decay(300, 2.3, 0.4, 40), 0.1)
    losses[200:203] = [40.0, 25.0, 12.0]
    assert findings("divergence", make_dynamics_timeline(losses)) == []


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_noisy_run_is_not_divergence(seed):
    assert findings("divergence", make_dynamics_timeline(noisy_curve([2.3] * 300, 0.3, seed))) == []
