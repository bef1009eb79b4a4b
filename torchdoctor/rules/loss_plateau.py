"""loss_plateau: the training loss does not decrease, and the update-to-weight ratio tells why."""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._dynamics import GAN_LOSSES, block_window, phase_evidence, phase_title, progress
from ._fixes import raise_learning_rate
from ._numbers import median, nice, thin
from .base import NotEvaluated, Param, finding_for, rule
from .divergence import PARAMS as DIVERGENCE_PARAMS
from .divergence import divergence_verdict

PARAMS = {
    "min_steps": Param(50, "finite training losses needed before any verdict"),
    "min_improvement": Param(0.05, "a plateau: the loss at the end is not even this fraction below the start"),
    "low_update_ratio": Param(1e-4, "median update-to-weight ratio below this: the learning rate is too small "
                              "(a healthy step moves the weights by about 1e-3 of their size, with any optimizer)"),
    "chance_margin": Param(0.1, "a loss within this fraction of the chance level ln(C) predicts no better than chance"),
    "target_update_ratio": Param(1e-3, "the update-to-weight ratio a raised learning rate aims at"),
    "max_lr_factor": Param(1000.0, "never suggest raising the learning rate by more than this factor"),
}

ADAPTIVE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "Adadelta", "RMSprop")
USUAL_MAX_LR = {"adaptive": 3e-3, "sgd": 0.1}  # tops of the usual ranges; a suggested lr stops there

OPTIMIZER_CHECK = (
    "model = Net().to(device)          # build, load and move the model first\n"
    "optimizer = torch.optim.{opt}(model.parameters(), lr={lr})   # then the optimizer, from this model\n"
    "...\n"
    "loss.backward()\n"
    "assert any(p.grad is not None for g in optimizer.param_groups for p in g['params']), \\\n"
    "    'no gradient reaches the parameters the optimizer updates'"
)

ONE_BATCH_CHECK = (
    "x, y = next(iter(train_loader))   # a working model and loss memorize one batch\n"
    "for _ in range(200):\n"
    "    optimizer.zero_grad()\n"
    "    loss = criterion(model(x), y)\n"
    "    loss.backward()\n"
    "    optimizer.step()\n"
    "print(loss.item())                # should fall towards 0"
)


@rule("loss_plateau", Severity.WARNING, "The training loss does not decrease", PARAMS)
def loss_plateau(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: a training loss that never got going. After at least `min_steps` (50)
    finite losses, the loss came down less than `min_improvement` (5%) over the run by all
    three measures: the typical loss of the last quarter of the steps (geometric mean of its
    middle 60%, so neither spikes nor a loss flipping between two levels move it) against the
    larger of the first window's (max(5, steps/20) steps) and the first quarter's; the median
    of the first 5 steps, when it stands more than two noise deviations above the end (a run
    that converged within its first steps); and a robust (Theil-Sen) trend line through the
    window medians (a slow, steady descent). On a noisy run one standard deviation of the
    noise counts as progress: the rule would rather miss a noisy plateau than call a
    learning run stuck. Each phase of the run (Timeline.phases: a new optimizer, other
    parameters trained, another dataset, a learning-rate restart) is judged on its own, against
    its own start, and the finding names its phase: a run that learned and then converged is
    not a plateau, and neither is a diverging one (divergence reports it) nor one that went NaN
    (nonfinite_loss). No verdict while the learning rate is still rising at the end of the run
    (warm-up), or on losses that go negative. The prior is the loss's chance level ln(C),
    recorded from the first call of a classification loss over C classes.

    The update-to-weight ratio ||w_after - w_before|| / ||w_before||, sampled every few steps,
    tells the cause:

    - 0 (on most sampled steps): the weights are not updated at all. The optimizer holds other
      parameters (the model was re-created, replaced or loaded after the optimizer was built),
      the parameters have requires_grad=False, the learning rate is 0, or the loss does not
      reach the weights (computed on a detached tensor or `.data`).
    - below `low_update_ratio` (1e-4): the learning rate is far too small. A healthy step moves
      the weights by about 1e-3 of their size, whatever the optimizer (Adam's steps are about
      the learning rate per weight, SGD's the learning rate times the gradient); the fix scales
      the learning rate to reach
      `target_update_ratio` (1e-3), at most `max_lr_factor` (1000x) at once and never past the
      top of the usual range (0.1 for SGD, 3e-3 for Adam-like optimizers). When the learning
      rate is already within a tenth of that top, the gradients are what is tiny, and the fix
      says where to look instead.
    - normal, and the loss sits at chance (within `chance_margin` of ln(C) for a classification
      loss over C classes, the prior recorded from the loss's first call): the model predicts
      no better than a uniform guess although the weights move: labels shuffled apart from
      their inputs, a loss computed on the wrong tensor, inputs that carry no signal. Severity
      warning.
    - normal, above chance (or no chance level known): the optimizer moves the weights but the
      loss does not respond: a loss computed on the wrong tensor, a model too small or
      squashed by its last activation, or a model that was already trained (fine-tuning at its
      optimum). Severity info: this cannot be told from a task that is simply hard.
    - not measured: the plateau is reported, the cause is not told.

    Why it matters: a run whose loss does not move is spending its compute on nothing.

    What to do: the fixes follow the cause; the ratio and the learning rate are in the evidence.
    """
    if tl.task == "generation":
        raise NotEvaluated(GAN_LOSSES)
    if tl.events_of("nonfinite_loss"):
        return
    series = tl.finite_losses()
    n = len(series)
    needed = int(p["min_steps"])
    if n < needed:
        raise NotEvaluated(f"{n} finite training losses; needs at least {needed}")
    values = [v for _, v in series]
    if min(values) < 0:
        raise NotEvaluated("the training loss takes negative values: its improvement cannot be measured as a ratio")
    phases = tl.phases()
    for index, _, part in tl.by_phase(series):
        if len(part) < needed:
            continue
        finding = _judge(tl, part, p)
        if finding is not None:
            if len(phases) > 1:
                finding.title += phase_title(index, phases)
                finding.evidence |= phase_evidence(index, phases)
            yield finding
            return


def _judge(tl: Timeline, series: list[tuple[int, float]], p: dict[str, float]) -> Finding | None:
    """The verdict on one phase's finite losses."""
    n = len(series)
    quarter = max(block_window(n), n // 4)
    lrs = tl.lrs_between(series[0][0], series[-1][0])
    lrs_end = tl.lrs_between(series[n - quarter][0], series[-1][0])
    if len(lrs_end) >= 2 and lrs_end[-1] >= max(lrs) and lrs_end[-1] > 1.1 * lrs_end[0]:
        raise NotEvaluated("the learning rate was still warming up at the end of the run")
    moved = progress(series)
    start, end, improvement = moved.start, moved.end, moved.improvement
    if start <= 0 or moved.improved(p["min_improvement"]):
        return None  # learned (or sits at 0, with nothing left to learn)
    if divergence_verdict(series, {k: q.default for k, q in DIVERGENCE_PARAMS.items()}) is not None:
        return None  # divergence reports it, with the right fix

    ratios = [r.update_ratio for r in tl.steps
              if r.update_ratio is not None and math.isfinite(r.update_ratio)
              and series[0][0] <= r.step <= series[-1][0]]
    ratio = median(ratios) if ratios else None
    zero_fraction = sum(1 for r in ratios if r == 0) / len(ratios) if ratios else None
    lr = tl.last_lr if tl.last_lr is not None else tl.optimizer_hparams.get("lr")
    opt = tl.optimizer_name()
    prior = tl.prior
    at_chance = bool(prior and prior.chance and prior.classes and abs(end - prior.chance) <= p["chance_margin"]
                     * prior.chance)
    severity = None
    fixes: list[Fix] = []
    if ratio is None:
        cause, why = "unknown", "the update-to-weight ratio was not measured, so the cause is not told"
        fixes.append(_one_batch())
    elif ratio == 0 and lr == 0:
        cause, why = "not_updated", "the learning rate is 0"
        new = 1e-3 if opt.startswith("Adam") else 0.01
        fixes.append(Fix("raise_learning_rate", f"The learning rate is 0, so no step changes a weight: set one "
                         f"(e.g. {new:g} for {opt}).", {"lr": new, "current_lr": 0.0},
                         f"optimizer = torch.optim.{opt}(model.parameters(), lr={new:g})"))
    elif ratio == 0:
        cause, why = "not_updated", "no optimizer step changes the weights"
        fixes.append(Fix(
            "check_optimizer_params",
            f"The update-to-weight ratio was 0 on {sum(1 for r in ratios if r == 0)} of {len(ratios)} sampled "
            "steps: the weights the optimizer updates do not move. Build the optimizer from the final model's "
            "parameters (after creating, loading or moving the model), check that they have "
            "requires_grad=True, and that the loss is computed from the model's output, not a detached copy.",
            {"zero_fraction": zero_fraction},
            OPTIMIZER_CHECK.format(opt=opt, lr=f"{lr:g}" if lr else "lr"),
        ))
    elif ratio < p["low_update_ratio"]:
        cause, why = "tiny_updates", f"each step moves the weights by only {fmt(ratio)} of their size"
        usual = USUAL_MAX_LR["adaptive" if opt.startswith(ADAPTIVE) else "sgd"]
        fix = raise_learning_rate(tl, lr or 0.0, ratio, p["target_update_ratio"], p["max_lr_factor"])
        if lr and lr >= usual / 10:
            # An ordinary learning rate that barely moves the weights: the gradients are what is tiny.
            why += f" at an ordinary learning rate ({fmt(lr)}): the gradients are tiny"
            fixes.append(Fix(
                "check_gradient_flow",
                f"The learning rate ({fmt(lr)}) is in the usual range, so the gradients themselves are tiny: look "
                "for vanishing gradients (saturated sigmoid/tanh, no normalization), a loss divided by a large "
                "constant, or a loss computed through a detached or rounded tensor.",
                {"lr": lr, "update_ratio": ratio},
                "loss.backward()\nfor name, p in model.named_parameters():\n"
                "    print(name, None if p.grad is None else p.grad.norm().item())",
            ))
        elif fix is not None:
            if fix.params["lr"] > usual:
                fix.params["lr"] = usual
                fix.text += f" Start at {fmt(usual)}, the top of the usual range for {opt}, and go up only if needed."
                fix.snippet = f"optimizer = torch.optim.{opt}(model.parameters(), lr={usual:g})"
            fixes.append(fix)
        else:
            fixes.append(Fix("raise_learning_rate", f"Raise the learning rate about "
                             f"{nice(min(p['target_update_ratio'] / ratio, p['max_lr_factor'])):g}x.",
                             {"factor": nice(min(p["target_update_ratio"] / ratio, p["max_lr_factor"]))}))
    elif at_chance:
        cause = "at_chance"
        why = (f"the weights do move ({fmt(ratio)} of their size per step) but the loss stays at chance, "
               f"ln({prior.classes}) = {fmt(prior.chance)}: the model predicts no better than a uniform guess")
        fixes.append(_one_batch(responding=False))
    else:
        cause = "loss_not_responding"
        why = f"the weights do move ({fmt(ratio)} of their size per step) but the loss does not respond"
        severity = Severity.INFO
        fixes.append(_one_batch(responding=False))
    per_layer = _layer_ratios(tl)
    title = (f"Loss plateaued over {n} steps: {fmt(start)} at the start, {fmt(end)} at the end "
             f"({-improvement:+.1%}); {why}")
    finding = finding_for(
        "loss_plateau",
        title,
        step=series[0][0],
        epoch=tl.steps[0].epoch if tl.steps else None,
        where=None,
        evidence={
            "cause": cause,
            "start_loss": start,
            "end_loss": end,
            "improvement": improvement,
            "steps": n,
            "update_ratio": ratio,
            "update_ratio_samples": len(ratios),
            "zero_update_fraction": zero_fraction,
            "layer_update_ratios": per_layer,
            "lr": lr,
            "optimizer": tl.optimizer_name(None),
            "chance_loss": prior.chance if prior else None,
            "classes": prior.classes if prior else None,
            "loss_history": thin(series),
        },
        fixes=fixes,
    )
    if severity is not None:
        finding.severity = severity
    return finding


def _one_batch(responding: bool = True) -> Fix:
    lead = ("The optimizer moves the weights but the loss does not respond. " if not responding else
            "The update-to-weight ratio was not measured. ")
    return Fix(
        "check_data_and_loss",
        lead + "Check that the model can memorize one batch: if it cannot, the loss is computed on the wrong "
        "tensor or the model cannot fit; if it can, check that targets match their inputs (not shuffled apart) "
        "and that the learning rate is not far too small.",
        {},
        ONE_BATCH_CHECK,
    )


def _layer_ratios(tl: Timeline) -> list[dict[str, object]]:
    """Median update-to-weight ratio per layer, over the sampled steps."""
    out: list[dict[str, object]] = []
    for i, layer in enumerate(tl.layers):
        values = [r.layer_update_ratios[i] for r in tl.steps
                  if r.layer_update_ratios is not None and i < len(r.layer_update_ratios)
                  and r.layer_update_ratios[i] is not None and math.isfinite(r.layer_update_ratios[i])]
        if values:
            out.append({"layer": layer.name, "type": layer.type, "update_ratio": median(values)})
    return out
