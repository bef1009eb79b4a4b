"""mode_collapse: a generator whose outputs stop differing from one another."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._gan import median
from .base import NotEvaluated, Param, finding_for, rule

MIN_SAMPLES = 6


@rule("mode_collapse", Severity.WARNING, "A generator's outputs losing their diversity across a batch",
      {"fall": Param(0.25, "the late diversity, as a share of its best earlier value, that is a collapse"),
       "floor": Param(0.1, "a diversity below which the outputs are nearly the same whatever came before")})
def mode_collapse(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the generator's outputs for one batch of noise become alike. On sampled
    steps torchdoctor measures the spread of a batch of generated samples across the batch over
    their spread overall (about 1 for samples as different as their values, 0 when every noise
    vector gives the same output). It is a collapse when the median of the last three samples
    falls below `fall` of the best value seen in the first two thirds of the run and below
    `floor`, or when it never rose above half of `floor` at all (every sample the same from the start:
    the noise is probably shared across the batch).

    Why it matters: a collapsed generator maps every noise vector to one or a few outputs that
    fool the discriminator; the losses can look fine while the samples are all the same picture.

    Not flagged: a diversity that dips and recovers, or stays a fraction of its start but well
    above `floor`.
    """
    roles = tl.roles
    if roles.generator is None:
        return  # not a GAN: nothing to judge, and nothing missing
    series = [(s, v) for s, v in roles.diversity if v == v]
    if len(series) < MIN_SAMPLES:
        raise NotEvaluated(f"fewer than {MIN_SAMPLES} sampled measurements of the generator's outputs")
    values = [v for _, v in series]
    late = median(values[-3:])
    head = values[: max(1, (2 * len(values)) // 3)]
    best = max(head)
    never = max(values) < p["floor"] / 2
    if not never and not (late < p["fall"] * best and late < p["floor"]):
        return
    step = next((s for s, v in series if v < p["floor"]), series[-1][0]) if not never else series[0][0]
    g = roles.generator
    if never:
        title = (f"{g}'s outputs are all alike from the start (diversity {fmt(max(values))} at most): every "
                 "sample of a batch is nearly the same")
    else:
        title = f"{g}'s outputs lost their diversity: {fmt(best)} → {fmt(late)} across a batch"
    fixes = []
    if never:
        fixes.append(Fix("sample_noise_per_sample",
                         "Draw one noise vector per sample of the batch, at every step: a noise tensor repeated "
                         "over the batch (or scaled near 0) gives every sample the same output.",
                         {}, "noise = torch.randn(b_size, nz, 1, 1, device=device)"))
    fixes += [
        Fix("lower_learning_rate",
            "Lower the generator's learning rate (or train the discriminator a little faster: the two time-scale "
            "rule), so the generator cannot jump to the one output that fools the discriminator now.", {}),
        Fix("minibatch_discrimination",
            "Let the discriminator see a batch's diversity: a minibatch standard-deviation feature in its last "
            "layers, or spectral normalization on its layers.", {},
            "torch.nn.utils.parametrizations.spectral_norm(nn.Conv2d(ndf, ndf * 2, 4, 2, 1))"),
    ]
    yield finding_for(
        "mode_collapse", title, step=step, where=g,
        evidence={"generator": g, "diversity_best": best, "diversity_end": late,
                  "diversity": [[s, v] for s, v in series]},
        fixes=fixes,
    )
