"""The GAN rules on hand-made timelines: a generator (G) whose output a discriminator (D) scores,
each with its own optimizer, their loss series, G's gradient norms and its outputs' diversity."""

from __future__ import annotations

import math

import pytest

from tests.rules.timelines import findings
from torchdoctor.rules import NotEvaluated
from torchdoctor.timeline import LayerInfo, ModelInfo, StepRecord, Timeline


def gan(d_losses: list[float], g_losses: list[float], g_norms: list[float] | None = None,
        diversity: list[float] | None = None, d_reaches: tuple[str, ...] = ("D",),
        g_holds: str = "G") -> Timeline:
    tl = Timeline()
    tl.models = [ModelInfo("Generator", {"Generator": "Generator", "fc": "Linear"}, 100, 100, label="G"),
                 ModelInfo("Discriminator", {"Discriminator": "Discriminator", "Discriminator:fc": "Linear"},
                           100, 100, label="D")]
    tl.layers = [LayerInfo("fc", "Linear", ["fc.weight"], 100, "weight", model="G"),
                 LayerInfo("Discriminator:fc", "Linear", ["Discriminator:fc.weight"], 100, "weight", model="D")]
    tl.roles.generator, tl.roles.discriminator = "G", "D"
    d_key, g_key = "D", ("G" if g_holds == "G" else "optimizer 1")
    tl.roles.optimizers = [
        {"index": 0, "optimizer": "Adam", "models": ["D"], "reaches": list(d_reaches), "steps": len(d_losses),
         "key": d_key},
        {"index": 1, "optimizer": "Adam", "models": [g_holds], "reaches": ["D", "G"], "steps": len(g_losses),
         "key": g_key},
    ]
    g_norms = g_norms or [1.0] * len(d_losses)
    for i, (d, g) in enumerate(zip(d_losses, g_losses, strict=True)):
        tl.steps.append(StepRecord(step=i, loss=d, lr=2e-4, grad_norm=1.0, layer_grad_norms=[g_norms[i], 1.0],
                                   model_losses={d_key: d, g_key: g}))
    tl.roles.diversity = [(i * 10, v) for i, v in enumerate(diversity or [])]
    tl.train_loss_fn = "binary_cross_entropy"
    return tl


def swing(center: float, n: int, amp: float = 0.2) -> list[float]:
    return [center + amp * math.sin(i / 3) for i in range(n)]


def test_a_discriminator_that_wins_while_the_generator_climbs_and_its_gradients_vanish():
    n = 200
    d = [1.4 * math.exp(-i / 20) + 0.01 for i in range(n)]
    g = [0.7 + 6 * (1 - math.exp(-i / 40)) for i in range(n)]
    norms = [2.0 * math.exp(-i / 30) + 1e-4 for i in range(n)]
    (f,) = findings("discriminator_overpowering", gan(d, g, norms))
    assert f.where == "D" and f.evidence["generator"] == "G"
    assert f.evidence["discriminator_loss_end"] < 0.1 < f.evidence["discriminator_loss_start"]
    assert f.evidence["generator_grad_norm_end"] < 0.01 * f.evidence["generator_grad_norm_start"]
    assert [x.action for x in f.fixes][:2] == ["non_saturating_generator_loss", "weaken_discriminator"]
    assert "D(fake)" in f.fixes[0].snippet


def test_the_usual_gan_equilibrium_is_not_overpowering():
    n = 200
    assert findings("discriminator_overpowering", gan(swing(1.2, n), swing(0.9, n, 0.3))) == []
    # a discriminator that gets good for a while, but the generator keeps up: no climb, no vanishing
    d = [max(0.3, 1.4 - i / 100) for i in range(n)]
    assert findings("discriminator_overpowering", gan(d, swing(1.5, n))) == []


def test_a_critic_with_negative_losses_is_not_judged_near_zero():
    n = 200
    d = [-5.0 * (1 - math.exp(-i / 30)) for i in range(n)]
    g = [0.5 + i / 10 for i in range(n)]
    assert findings("discriminator_overpowering", gan(d, g)) == []


def test_outputs_that_lose_their_diversity_are_a_collapse_and_a_dip_is_not():
    n = 100
    collapsed = [0.9, 0.95, 0.9, 0.8, 0.6, 0.4, 0.2, 0.08, 0.05, 0.04, 0.03, 0.03]
    (f,) = findings("mode_collapse", gan(swing(1.2, n), swing(0.9, n), diversity=collapsed))
    assert f.where == "G" and f.evidence["diversity_best"] == 0.95 and f.evidence["diversity_end"] < 0.05
    assert f.fixes[0].action == "lower_learning_rate"
    dip = [0.9, 0.95, 0.9, 0.5, 0.3, 0.5, 0.8, 0.9, 0.85, 0.9, 0.88, 0.9]
    assert findings("mode_collapse", gan(swing(1.2, n), swing(0.9, n), diversity=dip)) == []
    lower = [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.4, 0.38, 0.4, 0.41, 0.4]  # a fraction of its start, far above 0
    assert findings("mode_collapse", gan(swing(1.2, n), swing(0.9, n), diversity=lower)) == []


def test_outputs_alike_from_the_start_point_at_noise_shared_over_the_batch():
    (f,) = findings("mode_collapse", gan(swing(1.2, 50), swing(0.9, 50), diversity=[0.0] * 8))
    assert f.fixes[0].action == "sample_noise_per_sample"
    assert "randn(b_size" in f.fixes[0].snippet


def test_a_discriminator_step_that_reaches_the_generator_is_fake_not_detached():
    (f,) = findings("fake_not_detached", gan(swing(1.2, 50), swing(0.9, 50), d_reaches=("D", "G")))
    assert f.where == "D" and f.evidence["reaches"] == ["D", "G"]
    assert "D(fake.detach())" in f.fixes[0].snippet
    # the generator's step reaching the discriminator is the design, not a mistake
    assert findings("fake_not_detached", gan(swing(1.2, 50), swing(0.9, 50))) == []


def test_a_second_optimizer_over_the_discriminator_leaves_the_generator_untrained():
    tl = gan(swing(1.2, 50), swing(0.9, 50), g_holds="D")
    (f,) = findings("optimizer_holds_other_model", tl)
    assert f.where == "G" and f.evidence["holds"] == ["D"] and f.evidence["also_held_by"] == 0
    assert f.fixes[0].snippet.startswith("optimizer = torch.optim.Adam(G.parameters()")
    assert findings("optimizer_holds_other_model", gan(swing(1.2, 50), swing(0.9, 50))) == []


def test_the_loss_curve_rules_leave_a_gan_to_the_gan_rules():
    n = 200
    g = [0.7 + i / 20 for i in range(n)]  # a generator loss that climbs is no divergence of the run
    tl = gan(swing(1.2, n), g)
    assert tl.task == "generation"
    for code in ("divergence", "loss_plateau"):
        with pytest.raises(NotEvaluated, match="GAN"):
            findings(code, tl)
