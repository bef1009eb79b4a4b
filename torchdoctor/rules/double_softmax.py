"""double_softmax: probabilities fed to a loss that applies log-softmax itself, or logits to NLLLoss."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..layers import SOFTMAX_TYPES
from ..timeline import Timeline
from ._fixes import located_snippet, without_probability_layer
from .base import Param, finding_for, rule


@rule("double_softmax", Severity.ERROR, "Probabilities fed to a loss that applies log-softmax itself",
      {"tolerance": Param(1e-3, "how close to 1 a row must sum (to 0 its logsumexp) to count as probabilities")})
def double_softmax(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds, from what the training loss was given on sampled steps:

    - `cross_entropy` / `nn.CrossEntropyLoss` given probabilities: every value in [0, 1] and
      every row summing to 1, because the model ends in `nn.Softmax` (or `softmax` is applied
      before the loss). CrossEntropyLoss applies log_softmax itself: the softmax is applied twice.
    - `nll_loss` / `nn.NLLLoss` given something that is not log-probabilities: positive values,
      or rows whose logsumexp is not 0 (raw logits, or probabilities).

    Why it matters: softmax of probabilities is nearly flat (all inputs in [0, 1]), so the loss
    cannot fall much below log(C) minus a little and the gradients shrink: training stalls.
    NLLLoss on logits is not a likelihood at all: it rewards pushing the target logit to
    infinity.

    Not flagged: `log_softmax` + `NLLLoss`, logits + `CrossEntropyLoss`.
    """
    tol = p["tolerance"]
    ce = [s for s in tl.habits.loss_inputs if s["loss"] == "cross_entropy"]
    nll = [s for s in tl.habits.loss_inputs if s["loss"] == "nll_loss"]
    softmax = next((name for name, kind in tl.last_modules() if kind in SOFTMAX_TYPES), None)
    probs = [s for s in ce if s["min"] >= -tol and s["max"] <= 1 + tol and s["row_sum_error"] <= tol]
    if ce and len(probs) * 2 > len(ce):
        where = softmax
        location = without_probability_layer(tl, "Softmax", where)
        yield finding_for(
            "double_softmax",
            "CrossEntropyLoss was given probabilities (every row sums to 1"
            + (f"; the model ends in {where} (Softmax)" if where else "")
            + "): it applies log_softmax itself, so softmax is applied twice",
            step=probs[0]["step"], where=where,
            evidence={"loss": "cross_entropy", "samples": len(ce), "probability_samples": len(probs),
                      "min": min(s["min"] for s in probs), "max": max(s["max"] for s in probs),
                      "row_sum_error": max(s["row_sum_error"] for s in probs)},
            fixes=[Fix("fix_loss_input",
                       (f"Remove the final Softmax ({where}) from the model" if where else "Remove the softmax")
                       + " and give CrossEntropyLoss the raw logits; apply softmax only where you need "
                       "probabilities (prediction, metrics).",
                       {"module": where},
                       located_snippet(location) if location else
                       "model = nn.Sequential(..., nn.Linear(hidden, classes))  # no nn.Softmax at the end\n"
                       "loss = nn.CrossEntropyLoss()(model(x), y)\n"
                       "probabilities = model(x).softmax(dim=1)  # when you need them", location=location)],
        )
    bad = [s for s in nll if s["max"] > tol or s["lse_error"] > 10 * tol]
    if nll and len(bad) * 2 > len(nll):
        worst = max(bad, key=lambda s: s["lse_error"])
        kind = "probabilities" if softmax else "raw logits"
        yield finding_for(
            "double_softmax",
            f"NLLLoss was given {kind}, not log-probabilities (largest value {fmt(worst['max'])}, a row's "
            f"logsumexp {fmt(worst['lse_error'])} away from 0)",
            step=bad[0]["step"], where=softmax,
            evidence={"loss": "nll_loss", "samples": len(nll), "bad_samples": len(bad), "max": worst["max"],
                      "lse_error": worst["lse_error"]},
            fixes=[Fix("fix_loss_input",
                       "Give NLLLoss log-probabilities: end the model in nn.LogSoftmax(dim=1) (or apply "
                       "F.log_softmax), or drop the softmax and use CrossEntropyLoss on the logits.",
                       {"module": softmax},
                       "loss = F.nll_loss(F.log_softmax(logits, dim=1), y)\n# or, the same in one call:\n"
                       "loss = F.cross_entropy(logits, y)")],
        )
