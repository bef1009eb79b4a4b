import math
import random

import pytest

from tests.rules.timelines import LayerInfo, findings, make_timeline
from torchdoctor.rules import NotEvaluated


def noisy(n: int, level: float = 1.0, sigma: float = 0.5, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [level * math.exp(rng.gauss(0, sigma)) for _ in range(n)]


def test_geometric_growth_is_found_where_it_crosses_three_orders_of_magnitude():
    norms = noisy(20, sigma=0.1) + [2.0**k for k in range(1, 16)]
    (finding,) = findings("exploding_gradients", make_timeline(norms))
    assert finding.code == "exploding_gradients"
    assert 20 <= finding.step <= 20 + 10  # 2**7 = 128 is 100x the running median
    assert finding.evidence["ratio"] >= 100
    actions = [f.action for f in finding.fixes]
    assert actions[:2] == ["clip_gradients", "lower_learning_rate"]
    clip = finding.fixes[0].params["max_norm"]
    assert 1.0 <= clip <= 3.0, "derived from the healthy steps, not from the explosion"
    assert finding.fixes[1].params["lr"] == pytest.approx(0.01)


def test_single_huge_spike_is_found():
    norms = noisy(60)
    norms[40] = 500.0  # 100x+ its recent history, below 1000x the start
    (finding,) = findings("exploding_gradients", make_timeline(norms))
    assert finding.step == 40 and finding.evidence["criterion"] == "spike"


@pytest.mark.parametrize("seed", range(5))
def test_noisy_healthy_norms_stay_clean(seed):
    assert findings("exploding_gradients", make_timeline(noisy(2000, sigma=0.8, seed=seed))) == []


def test_growth_below_min_norm_is_not_exploding():
    norms = [1e-6 * 1.5**k for k in range(30)]  # grows 1e5x but stays below 1.0
    assert findings("exploding_gradients", make_timeline(norms)) == []


def test_decreasing_norms_stay_clean():
    assert findings("exploding_gradients", make_timeline([100.0 / (k + 1) for k in range(200)])) == []


def test_too_short_is_not_evaluated():
    with pytest.raises(NotEvaluated):
        findings("exploding_gradients", make_timeline([1.0, 2.0]))


def test_blow_up_within_the_first_steps_is_found_on_growth():
    # Measured on examples/exploding_gradients.py --lr 0.012 (seed 0): NaN at step 5, before the
    # spike criterion has its 5 steps of history.
    (finding,) = findings("exploding_gradients", make_timeline([14.2, 20.4, 47.3, 1630.0, 7.28e6]))
    assert finding.step == 4 and finding.evidence["criterion"] == "growth"
    assert finding.evidence["reference_norm"] == pytest.approx(47.3)  # the baseline median, not the spike


def test_moderate_early_growth_is_not_exploding():
    norms = [0.5, 2.0, 10.0, 40.0, 30.0] + noisy(40, level=30.0, sigma=0.2)  # warm-up: 80x, not 1000x
    assert findings("exploding_gradients", make_timeline(norms)) == []


def test_a_norm_that_overflowed_with_finite_gradients_counts_as_the_largest():
    # Measured on examples/exploding_gradients.py --lr 0.012 (seed 4): every gradient finite, but
    # their float32 sum of squares overflowed, so the total norm read Inf at step 4.
    tl = make_timeline([33.0, 49.0, 909.0, 58100.0, math.inf])
    (finding,) = findings("exploding_gradients", tl)
    assert finding.step == 4 and finding.evidence["norm"] == pytest.approx(1.8446743e19)
    assert finding.evidence["norm_overflowed"] and "overflowed" in finding.title
    tl.steps[4].nonfinite_grads = ["fc.weight"]  # a real Inf gradient is nonfinite_gradient's, not a norm
    assert findings("exploding_gradients", tl) == []


def test_names_the_layers_with_the_largest_norm():
    layers = [LayerInfo("conv1", "Conv2d", ["conv1.weight"], 10, "weight"),
              LayerInfo("fc", "Linear", ["fc.weight"], 10, "weight")]
    norms = noisy(20, sigma=0.1) + [1e4]
    per_layer = [[n * 0.1, n] for n in norms[:-1]] + [[1e4, 10.0]]
    (finding,) = findings("exploding_gradients", make_timeline(norms, layers=layers, layer_norms=per_layer))
    assert finding.where == "conv1"
    assert finding.evidence["largest_layers"][0]["layer"] == "conv1"
