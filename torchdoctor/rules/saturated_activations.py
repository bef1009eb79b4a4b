"""saturated_activations: sigmoid/tanh outputs pinned near their limits."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..layers import SATURATION_MARGIN, SATURATION_MARGINS
from ..timeline import Timeline
from .base import Param, finding_for, rule


@rule("saturated_activations", Severity.WARNING, "Sigmoid/tanh outputs pinned near their limits",
      {"saturated_share": Param(0.5, "share of a layer's outputs within 1% of a limit that is too many"),
       "min_samples": Param(2, "sampled forwards needed, the last of them all showing it"),
       "limit_margin": Param(SATURATION_MARGIN, "distance from a limit (sigmoid 0 and 1, tanh ±1) within which an "
                             "output counts as pinned; measured at " + ", ".join(map(str, SATURATION_MARGINS))
                             + " (another value rounds down to one of them)")})
def saturated_activations(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: `nn.Sigmoid` / `nn.Tanh` layers most of whose outputs are within 0.01 of
    their limits (below 0.01 or above 0.99 for sigmoid, beyond ±0.99 for tanh; `limit_margin`)
    on the sampled training forwards, still at the last ones.

    Why it matters: the derivative there is almost zero (sigmoid' < 0.01, tanh' < 0.02), so
    the gradients through those units vanish and the layers below stop learning. The usual
    causes: inputs on a large scale, weights initialized too large, or a learning rate that
    grew the pre-activations.

    Not flagged: a healthy tanh/sigmoid network with most outputs in the steep middle range,
    and a final sigmoid that is confident on examples it has learned (that is its job): only
    hidden layers count.
    """
    by_module: dict[str, list[dict]] = {}
    for s in tl.habits.activations:
        if "saturated" in s:
            by_module.setdefault(s["module"], []).append({**s, "saturated": _share(s, p["limit_margin"])})
    final = {name for name, _ in tl.last_modules()}  # the output layer: confident by design
    hits = []
    for module, samples in by_module.items():
        if module in final or len(samples) < p["min_samples"]:
            continue
        if all(s["saturated"] >= p["saturated_share"] for s in samples[-2:]):
            hits.append((samples[-1]["saturated"], module, samples))
    if not hits:
        return
    share, module, samples = max(hits)
    kind = samples[-1]["type"]
    first = next(s for s in samples if s["saturated"] >= p["saturated_share"])
    yield finding_for(
        "saturated_activations",
        f"{share:.0%} of the outputs of {tl.label(module)} are pinned at its limits: its gradient is nearly zero there"
        + (f" ({len(hits) - 1} more layers likewise)" if len(hits) > 1 else ""),
        step=first["step"], where=module,
        evidence={"layers": {m: round(ss[-1]["saturated"], 3) for _, m, ss in hits}, "type": kind,
                  "history": [[s["step"], round(s["saturated"], 3)] for s in samples][-20:]},
        fixes=[
            Fix("add_normalization", "Normalize the pre-activations: a LayerNorm/BatchNorm before the "
                f"{kind} keeps them in its steep range.", {"module": module, "modules": [m for _, m, _ in hits]},
                f"nn.Sequential(nn.Linear(d_in, d), nn.LayerNorm(d), nn.{kind}())"),
            Fix("change_initialization", "Initialize the weights for a saturating activation (Xavier/Glorot) and "
                "standardize the inputs.", {"init": "xavier_uniform_"},
                "for m in model.modules():\n    if isinstance(m, nn.Linear):\n"
                f"        nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(\"{kind.lower()}\"))"),
            Fix("change_activation", "In hidden layers, use ReLU or GELU, which do not saturate for positive inputs.",
                {"activation": "GELU"}),
        ],
    )


def _share(sample: dict, margin: float) -> float:
    """The share of pinned outputs at the largest measured margin not above `margin` (hand-made or
    older samples carry only the default's share)."""
    shares = sample.get("saturated_at")
    if not shares:
        return sample["saturated"]
    below = [m for m in shares if m <= margin + 1e-12]
    return shares[max(below)] if below else shares[min(shares)]
