"""double_sigmoid: probabilities fed to BCEWithLogitsLoss, which applies the sigmoid itself."""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._fixes import located_snippet, without_probability_layer
from .base import Param, finding_for, rule

LOSS = "binary_cross_entropy_with_logits"
SIGMOID_TYPES = frozenset({"Sigmoid", "Hardsigmoid"})


@rule("double_sigmoid", Severity.ERROR, "Probabilities fed to BCEWithLogitsLoss (a sigmoid applied twice)",
      {"min_samples": Param(3, "sampled steps needed when the model ends in a Sigmoid module"),
       "min_samples_no_module": Param(5, "sampled steps needed when no Sigmoid module is seen (torch.sigmoid "
                                         "in the forward): every one of them must hold values in [0, 1]")})
def double_sigmoid(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds, from what the training loss was given on sampled steps:
    `F.binary_cross_entropy_with_logits` / `nn.BCEWithLogitsLoss` given values that all lie in
    [0, 1] on several sampled steps, because the model ends in `nn.Sigmoid` (or `torch.sigmoid`
    is applied before the loss). The loss applies the sigmoid itself: it is applied twice.

    Why it matters: sigmoid of a value in [0, 1] lies in [0.5, 0.73], so the loss can never
    predict a negative (its loss on a label 0 cannot go below ln 2 = 0.69 per element) and the
    gradients through the first sigmoid shrink: training stalls at a loss that looks plausible.

    Not flagged: raw logits into `BCEWithLogitsLoss` (their values leave [0, 1] within a few
    steps, even when they start inside it); probabilities into `BCELoss` (`binary_cross_entropy`).
    With a Sigmoid module as the model's last layer, most of at least `min_samples` sampled steps
    must be in [0, 1]; without one (a `torch.sigmoid` in the forward), all of at least
    `min_samples_no_module`. Logits given to `BCELoss` make it raise ("all elements of input
    should be between 0 and 1"): that crash is explained by `script_error` (use BCEWithLogitsLoss
    on the raw logits).
    """
    samples = [s for s in tl.habits.loss_inputs if s["loss"] == LOSS]
    inside = [s for s in samples if s["min"] >= 0.0 and s["max"] <= 1.0]
    sigmoid = next((name for name, kind in tl.last_modules() if kind in SIGMOID_TYPES), None)
    if sigmoid is not None:
        found = len(samples) >= p["min_samples"] and len(inside) * 2 > len(samples)
    else:
        found = len(samples) >= p["min_samples_no_module"] and len(inside) == len(samples)
    if not found:
        return
    low, high = min(s["min"] for s in inside), max(s["max"] for s in inside)
    location = without_probability_layer(tl, "Sigmoid", sigmoid)
    yield finding_for(
        "double_sigmoid",
        "BCEWithLogitsLoss was given probabilities (every value in [0, 1] on "
        f"{len(inside)} of {len(samples)} sampled steps"
        + (f"; the model ends in {sigmoid} (Sigmoid)" if sigmoid else "")
        + "): it applies the sigmoid itself, so the sigmoid is applied twice",
        step=inside[0]["step"], where=sigmoid,
        evidence={"loss": LOSS, "module": sigmoid, "samples": len(samples), "probability_samples": len(inside),
                  "min": low, "max": high, "mean": sum(s["mean"] for s in inside) / len(inside),
                  "least_loss": _least_loss(high)},
        fixes=[Fix("fix_loss_input",
                   (f"Remove the final Sigmoid ({sigmoid}) from the model" if sigmoid else "Remove the sigmoid")
                   + " and give BCEWithLogitsLoss the raw logits; apply the sigmoid only where you need "
                   "probabilities (prediction, metrics). Or keep the sigmoid and use nn.BCELoss.",
                   {"module": sigmoid, "loss": LOSS},
                   located_snippet(location) if location else
                   "model = nn.Sequential(..., nn.Linear(hidden, outputs))  # no nn.Sigmoid at the end\n"
                   "loss = nn.BCEWithLogitsLoss()(model(x), y)\n"
                   "probabilities = torch.sigmoid(model(x))  # when you need them", location=location)],
    )


def _least_loss(high: float) -> dict[str, float]:
    """What the doubled sigmoid costs: the least loss per element it allows on a label 0 (at an
    input of 0, sigmoid 0.5) and on a label 1 (at the largest input seen)."""
    return {"label_0": round(math.log(2.0), 4), "label_1": round(math.log1p(math.exp(-high)), 4)}
