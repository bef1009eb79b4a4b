"""nonfinite_loss: the training loss became NaN or Inf, traced to where it started."""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._fixes import clip_gradients, lower_learning_rate
from ._numbers import thin
from .base import NotEvaluated, finding_for, rule
from .exploding_gradients import PARAMS as EXPLODING_PARAMS
from .exploding_gradients import explosion_onset, norm_series

LOSS_CLIMB = 10.0  # the last finite loss this many times its minimum: the run was blowing up

CUSTOM_OP_HINT = (
    "x = torch.log(x.clamp_min(1e-8))       # instead of torch.log(x)\n"
    "x = torch.sqrt(x.clamp_min(1e-8))      # instead of torch.sqrt(x)\n"
    "x = x / (y + 1e-8)                     # instead of x / y"
)


@rule("nonfinite_loss", Severity.CRITICAL, "The training loss became NaN or Inf")
def nonfinite_loss(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the first step whose training loss (the tensor `.backward()` was called
    on, or a loss module's output) is NaN or Inf, and where it came from (`origin`):

    - `"input"`: the batch itself held NaN/Inf (model input, target, or the DataLoader batch);
    - a module path such as `features.3`: the first module whose output went NaN/Inf while
      its inputs were finite (or the module whose own forward code made them non-finite);
    - `"loss"`: the model's output was finite and the loss computation produced it (for
      example `log(0)` in a hand-written loss).

    To find the origin torchdoctor replays that one forward pass on the same batch with
    checks on every module, under `no_grad`, restoring RNG state and BatchNorm statistics,
    so your training is unchanged. An intentional `-inf` (attention masks filled with
    `masked_fill(..., -inf)`) is not blamed unless nothing else explains the NaN.

    What to do depends on the origin: clean the data; replace the unstable loss by its fused
    form (`F.cross_entropy` on logits, `F.binary_cross_entropy_with_logits`) or clamp its
    input; and when the gradients were growing before the NaN, lower the learning rate and
    clip gradients (the finding computes both numbers).
    """
    events = tl.events_of("nonfinite_loss")
    if not events:
        if not tl.steps and tl.backward_calls == 0:
            raise NotEvaluated("no training loss was observed (no backward() call)")
        return
    event = events[0]
    data = event.data
    origin = data.get("origin")
    step = event.step
    finite_before = [(s, v) for s, v in tl.loss_series() if math.isfinite(v) and (step is None or s < step)]
    bad_steps = sum(1 for r in tl.steps if r.loss is not None and not math.isfinite(r.loss))
    exploding = explosion_onset(tl, {k: q.default for k, q in EXPLODING_PARAMS.items()})
    grads_grew = exploding is not None and norm_series(tl)[exploding[0]][0] <= (step or 0)
    finite_values = [v for _, v in finite_before]
    loss_climbed = len(finite_values) >= 3 and finite_values[-1] > LOSS_CLIMB * max(min(finite_values), 1e-12)
    evidence = {
        "step": step,
        "value": data.get("value"),
        "origin": origin,
        "origin_detail": data.get("detail"),
        "module_type": data.get("module_type"),
        "last_finite_loss": finite_before[-1][1] if finite_before else None,
        "last_finite_step": finite_before[-1][0] if finite_before else None,
        "nonfinite_steps": bad_steps,
        "loss_history": thin(finite_before[-200:], 30),
        "gradients_were_exploding": grads_grew,
    }
    earlier_grad = next((e for e in tl.events_of("nonfinite_gradient")
                         if e.step is not None and step is not None and e.step < step), None)
    for key in ("input", "masked_neg_inf", "kind", "weights_nonfinite"):
        if key in data:
            evidence[key] = data[key]
    term = _nonfinite_term(tl, step)
    if term is not None:  # a model that returns its losses (a detector): which part went first
        evidence.update(term)

    value = fmt(data.get("value"))
    fixes: list[Fix] = []
    if origin == "input":
        what = data.get("input", {}).get("tensor", "batch")
        title = f"Loss became {value} at step {step}: the {what} holds NaN/Inf"
        fixes.append(Fix(
            "clean_input_data",
            f"The {what} contains NaN/Inf values ({_counts(data.get('input', {}))}). Fix them at the "
            "source, or drop/repair the bad samples in your Dataset.",
            {"tensor": what},
            "x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)   # or filter the samples\n"
            "assert torch.isfinite(x).all(), 'bad sample'",
        ))
    elif origin == "loss" and grads_grew:
        title = f"Loss became {value} at step {step} (the model output was finite; the loss overflowed)"
    elif origin == "loss":
        title = f"Loss became {value} at step {step} in the loss computation (the model output was finite)"
        fixes.append(Fix(
            "fix_loss_input",
            "The loss computation itself overflowed: a log of 0 or a division by 0 in a hand-written "
            "loss. Use the fused, numerically stable form on logits, or clamp the argument.",
            {},
            "loss = F.cross_entropy(logits, y)                 # not -(y * torch.log(softmax(logits)))\n"
            "loss = F.binary_cross_entropy_with_logits(z, y)   # not BCE(sigmoid(z), y)\n"
            "loss = -(y * torch.log(p.clamp_min(1e-8))).sum(1).mean()",
        ))
    elif origin and data.get("weights_nonfinite") and earlier_grad is not None:
        title = (f"Loss became {value} at step {step} because the weights of {tl.label(origin)} were already "
                 f"non-finite: the update of step {earlier_grad.step} applied NaN/Inf gradients")
        evidence["caused_by"] = {"code": "nonfinite_gradient", "step": earlier_grad.step}
        fixes.append(Fix(
            "fix_nonfinite_gradient",
            f"Fix the non-finite gradient of step {earlier_grad.step} first (see nonfinite_gradient): this NaN "
            "is its consequence.",
            {"step": earlier_grad.step},
        ))
    elif origin:
        title = f"Loss became {value} at step {step}; first non-finite output in {tl.label(origin)}"
        if data.get("weights_nonfinite"):
            title += " (its weights were already non-finite)"
        if not grads_grew:
            fixes.append(Fix(
                "add_epsilon",
                f"{data.get('detail', origin)}: guard the operation in {origin} that overflows "
                "(exp, log, sqrt, division, pow) with a clamp or an epsilon.",
                {"module": origin},
                CUSTOM_OP_HINT,
            ))
        if not grads_grew and not loss_climbed:
            fixes.append(Fix(
                "normalize_input",
                f"Gradients were steady and the loss finite up to step {step}, so the batch of step {step} drove "
                f"{origin} out of range: look for outliers in it, and normalize or clip the inputs.",
                {"step": step},
                "x = (x - mean) / std                 # normalize the inputs\n"
                "x = x.clamp(-clip, clip)            # or bound the outliers",
            ))
    else:
        title = f"Loss became {value} at step {step}"
    # The learning rate is to blame when the run was blowing up before the NaN (gradients growing,
    # or the loss climbing); an op that overflowed on one batch of a steady run is not its fault.
    blew_up = grads_grew or loss_climbed or not origin
    if origin != "input" and blew_up and "caused_by" not in evidence:
        for fix in (lower_learning_rate(tl, step), clip_gradients(tl, norm_series(tl)[exploding[0]][0]
                                                                  if grads_grew else step)):
            if fix:
                fixes.append(fix)
    if grads_grew:
        title += " after the gradients exploded"
    if term is not None and len(term["nonfinite_terms"]) < len(term["terms"]):  # one part, not all
        head = f" (computed in {term['head']})" if term.get("head") else ""
        title += f"; the loss part {term['term']}{head} went non-finite"
    yield finding_for(
        "nonfinite_loss", title, step=step, epoch=event.epoch,
        where=origin if origin not in (None, "input", "loss") else None,
        evidence=evidence, fixes=fixes,
    )


def _nonfinite_term(tl: Timeline, step: int | None) -> dict[str, object] | None:
    """The first loss part that was non-finite at the NaN's step (or the first step after it
    that recorded parts), with the head that computes it and every part's value then. When every
    part is non-finite, the origin (a backbone layer) says more than the part does."""
    for rec in tl.steps:
        if rec.terms is None or (step is not None and rec.step < step):
            continue
        bad = [name for name, v in rec.terms.items() if not math.isfinite(v)]
        if not bad:
            if step is not None and rec.step == step:
                return None
            continue
        return {"term": bad[0], "nonfinite_terms": bad, "head": tl.loss_terms.get(bad[0]),
                "terms": dict(rec.terms), "terms_step": rec.step}
    return None


def _counts(info: dict) -> str:
    parts = [f"{info.get('nan_count', 0)} NaN", f"{info.get('inf_count', 0)} Inf"]
    if "shape" in info:
        parts.append(f"shape {info['shape']}")
    return ", ".join(parts)
