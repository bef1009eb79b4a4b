"""train_mode_missing: training went on with the model still in eval() after a validation pass."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._modes import mode_layers
from .base import Param, finding_for, rule


@rule("train_mode_missing", Severity.WARNING, "Training steps taken with the model still in eval() mode",
      {"min_steps": Param(3, "optimizer steps trained in eval() before a verdict")})
def train_mode_missing(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: optimizer steps whose model's forward (with gradients on) ran while the
    model was in `eval()` mode, after earlier steps had trained it in `train()` mode: the script
    called `model.eval()` for validation and never `model.train()` again. Only on a model with
    Dropout or BatchNorm layers.

    Why it matters: in eval() dropout is off (the regularization silently stops) and BatchNorm
    normalizes with its frozen running statistics instead of the batch's and stops updating them,
    so everything trained after the first validation trains a different model than intended.

    Not flagged: a model with neither layer (train and eval mode compute the same), a fine-tune
    that keeps only its BatchNorm layers in eval (`model.train()` then `bn.eval()`: frozen
    statistics), a model run in eval() without gradients (a GAN's generator sampling under
    no_grad), and a run in eval() from its first step (a deliberate choice, not a forgotten call).
    """
    habits = tl.habits
    if habits.eval_mode_steps < p["min_steps"] or not habits.train_mode_steps:
        return
    found = mode_layers(tl, habits.eval_mode_model)
    if found is None:
        return
    layers, kinds, name = found.layers, found.kinds, found.name
    first = habits.eval_mode_first_step
    total = habits.eval_mode_steps + habits.train_mode_steps
    yield finding_for(
        "train_mode_missing",
        f"{habits.eval_mode_steps} of {total} training steps ran with {name} in eval() mode (from step {first}): "
        f"its {', '.join(kinds)} layers behaved as in evaluation",
        step=first,
        where=None,
        evidence={"steps": habits.eval_mode_steps, "train_mode_steps": habits.train_mode_steps, "first_step": first,
                  "model": found.model.label, "module_types": kinds, "modules": list(layers)[:20]},
        fixes=[Fix("call_train",
                   f"Call {name}.train() after each validation pass, before the next training step "
                   f"({habits.eval_mode_steps} steps trained in eval() mode).",
                   {"model": found.model.label, "steps": habits.eval_mode_steps, "first_step": first},
                   f"{name}.eval()\nwith torch.no_grad():\n    validate({name})\n{name}.train()  # add this line")],
    )
