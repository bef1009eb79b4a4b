"""discriminator_overpowering: a GAN's discriminator wins, and the generator stops learning."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._gan import ends, median, pair
from .base import NotEvaluated, Param, finding_for, rule

MIN_STEPS = 40


@rule("discriminator_overpowering", Severity.WARNING,
      "A GAN's discriminator loss near 0 while the generator's climbs and its gradients vanish",
      {"near_zero": Param(0.1, "the discriminator's late loss, as a share of its loss at the start, that is 'near 0'"),
       "climb": Param(2.0, "the generator's late loss over its loss at the start that is a climb"),
       "vanish": Param(0.1, "the generator's late gradient norm over its norm at the start that is vanishing")})
def discriminator_overpowering(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: in a GAN (one model's output fed to another, each with its own
    optimizer), the discriminator's loss falls near 0 (its median over the last quarter of the
    run below `near_zero` of its loss at the first steps, the median of three) while the
    generator's loss climbs (past `climb` times the lowest of its first five) or the generator's
    gradient norm vanishes (below `vanish` of its start).

    Why it matters: a discriminator that tells every fake apart gives the generator nothing to
    learn from: with the saturating loss log(1 - D(G(z))) its gradient vanishes, and even with
    the usual non-saturating loss the generator chases a signal that no longer moves. The
    samples stop improving while the run goes on.

    Not flagged: losses that swing but keep both sides in play (the normal GAN equilibrium, the
    discriminator's BCE near ln 4 = 1.39 for the sum of its two terms), and critics whose loss
    is not a probability (WGAN: negative losses are not judged).
    """
    gan = pair(tl)
    if gan is None:
        return  # not a GAN: nothing to judge, and nothing missing
    if len(gan.d_loss) < MIN_STEPS or len(gan.g_loss) < MIN_STEPS:
        raise NotEvaluated(f"fewer than {MIN_STEPS} steps of each model's loss")
    if min(v for _, v in gan.d_loss) < 0:
        return  # a critic's loss (WGAN) has no 'near 0'
    # The starts are the first steps' losses: a discriminator can win within its first few steps,
    # so a median over a longer stretch would already be near 0.
    d_start, d_end = median([v for _, v in gan.d_loss[:3]]), median(ends(gan.d_loss, 0.25, 10)[1])
    g_start, g_end = min(v for _, v in gan.g_loss[:5]), median(ends(gan.g_loss, 0.25, 10)[1])
    norms = tl.model_grad_norms(gan.generator)
    n_start = n_end = None
    if len(norms) >= 15:
        n_start, n_end = median(ends(norms, 0.1, 5)[0]), median(ends(norms, 0.25, 10)[1])
    if not d_start > 0 or not d_end < p["near_zero"] * d_start:
        return
    climbs = g_start > 0 and g_end > p["climb"] * g_start
    vanishes = n_start is not None and n_start > 0 and n_end < p["vanish"] * n_start
    if not (climbs or vanishes):
        return
    first = next((s for s, v in gan.d_loss if v < p["near_zero"] * d_start), gan.d_loss[-1][0])
    d_opt, g_opt = gan.d_optimizer or {}, gan.g_optimizer or {}
    d_steps, g_steps = d_opt.get("steps", 0), g_opt.get("steps", 0)
    title = (f"{gan.discriminator} overpowers {gan.generator}: the discriminator's loss fell from "
             f"{fmt(d_start)} to {fmt(d_end)} while the generator's went {fmt(g_start)} → {fmt(g_end)}"
             + (f" and its gradients {fmt(n_start)} → {fmt(n_end)}" if vanishes else ""))
    d_name, g_name = gan.discriminator, gan.generator
    fixes = [
        Fix("non_saturating_generator_loss",
            "Train the generator to make the discriminator say 'real' (the non-saturating loss): its gradient "
            "stays large when the discriminator is confident, where log(1 - D(G(z))) vanishes.",
            {}, f"errG = criterion({d_name}(fake), torch.ones_like(label))  # real labels for the generator's step"),
        Fix("weaken_discriminator",
            "Slow the discriminator down: a lower learning rate than the generator's (or one discriminator update per "
            "generator update), one-sided label smoothing, and noise or dropout on its inputs.",
            {"discriminator_steps": d_steps, "generator_steps": g_steps},
            "label = torch.full((b_size,), 0.9)  # real labels smoothed to 0.9 for the discriminator"),
    ]
    if d_steps > g_steps > 0:
        fixes[1].text += f" It took {d_steps} steps to the generator's {g_steps}."
    yield finding_for(
        "discriminator_overpowering", title, step=first, where=d_name,
        evidence={"discriminator": d_name, "generator": g_name,
                  "discriminator_loss_start": d_start, "discriminator_loss_end": d_end,
                  "generator_loss_start": g_start, "generator_loss_end": g_end,
                  "generator_grad_norm_start": n_start, "generator_grad_norm_end": n_end,
                  "discriminator_loss": [list(x) for x in gan.d_loss[-50:]],
                  "generator_loss": [list(x) for x in gan.g_loss[-50:]]},
        fixes=fixes,
    )
