"""eval_mode_missing: validation ran with dropout and batch-norm still in training mode."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._fixes import around_source, located_snippet
from ._modes import mode_layers
from .base import finding_for, rule


@rule("eval_mode_missing", Severity.WARNING, "Validation ran with dropout/batch-norm in training mode")
def eval_mode_missing(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: losses computed for evaluation (under `torch.no_grad()` or
    `inference_mode()`) while the model was still in `train()` mode, on a model with Dropout or
    BatchNorm layers: `model.eval()` was not called before validation.

    Why it matters: in training mode dropout zeroes activations at random, so validation scores
    are noisy and too pessimistic; BatchNorm normalizes with the validation batch's own
    statistics and, worse, updates its running statistics with validation data.

    Not flagged: a model with neither layer (train and eval mode compute the same), and
    forwards under no_grad that no loss is computed on (a GAN generating samples to train its
    discriminator).
    """
    habits = tl.habits
    if not habits.eval_in_train_mode:
        return
    found = mode_layers(tl, habits.eval_model)
    if found is None:
        return
    layers, kinds, name = found.layers, found.kinds, found.name
    location = around_source(tl, "evaluation", f"{name}.eval()", f"{name}.train()")
    yield finding_for(
        "eval_mode_missing",
        f"{habits.eval_in_train_mode} evaluation losses were computed with the model in train() mode: its "
        f"{', '.join(kinds)} layers behaved as in training",
        step=habits.eval_in_train_mode_step,
        where=None,
        evidence={"evaluation_losses": habits.eval_in_train_mode, "module_types": kinds,
                  "modules": list(layers)[:20], "first_step": habits.eval_in_train_mode_step},
        fixes=[Fix("call_eval",
                   f"Call {name}.eval() before validating and {name}.train() before training again.",
                   {"modules": len(layers)},
                   located_snippet(location) if location else
                   f"{name}.eval()\nwith torch.no_grad():\n    for x, y in val_loader:\n"
                   f"        val_loss += criterion({name}(x), y).item()\n{name}.train()", location=location)],
    )
