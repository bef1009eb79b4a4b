"""Hand-made timelines: rules are pure functions of a timeline, so they test in milliseconds."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from torchdoctor.config import Config
from torchdoctor.rules import REGISTRY
from torchdoctor.timeline import EvalPass, Event, LayerInfo, ModelInfo, StepRecord, Timeline


def make_timeline(norms: list[float], losses: list[float] | None = None, lr: float = 0.1,
                  layers: list[LayerInfo] | None = None, layer_norms: list[list[float]] | None = None,
                  module_types: dict[str, str] | None = None) -> Timeline:
    tl = Timeline()
    tl.layers = layers or [LayerInfo("fc", "Linear", ["fc.weight"], 100, "weight")]
    types = module_types or {layer.name: layer.type for layer in tl.layers}
    tl.models = [ModelInfo("Net", types, 1000, 1000)]
    tl.optimizers = ["SGD"]
    for i, norm in enumerate(norms):
        tl.steps.append(StepRecord(
            step=i, epoch=0, lr=lr, grad_norm=norm,
            loss=losses[i] if losses else 1.0,
            layer_grad_norms=layer_norms[i] if layer_norms else [norm],
        ))
    tl.backward_calls = len(norms)
    return tl


def findings(code: str, tl: Timeline, **overrides: float):
    rule = REGISTRY[code]
    params = Config().params_for(rule)
    params.update(overrides)
    return rule.run(tl, params)


def noisy_curve(clean: Sequence[float], noise: float, seed: int = 0) -> list[float]:
    """`clean` times log-normal noise of relative spread `noise` (0.3: mini-batch losses +-30%)."""
    rng = random.Random(seed)
    return [v * math.exp(rng.gauss(0.0, noise)) for v in clean]


def decay(n: int, start: float, end: float, tau: float) -> list[float]:
    """An exponential approach from `start` to `end` over `n` points, time constant `tau` points."""
    return [end + (start - end) * math.exp(-i / tau) for i in range(n)]


def sampled(step: int) -> bool:
    """The update-ratio probe's schedule: the first 3 steps, then every 10th."""
    return step < 3 or step % 10 == 0


def make_dynamics_timeline(
    train_losses: Sequence[float],
    steps_per_epoch: int | None = None,
    val_losses: Sequence[float | None] | None = None,
    val_acc: Sequence[float | None] | None = None,
    val_epochs: Sequence[int] | None = None,
    lr: float | Callable[[int], float] = 0.01,
    update_ratios: float | Callable[[int], float] | None = None,
    optimizer: str = "SGD",
    hparams: dict | None = None,
    module_types: dict[str, str] | None = None,
    input_shape: list[int] | None = None,
    num_params: int = 100_000,
) -> Timeline:
    """A run as the recorder leaves it: one StepRecord per training loss (epochs of `steps_per_epoch`
    steps), one validation pass after each epoch (or after each epoch in `val_epochs`), update
    ratios on the probe's sampled steps only."""
    tl = Timeline()
    types = module_types or {"fc1": "Linear", "act": "ReLU", "fc2": "Linear"}
    tl.layers = [LayerInfo(name, t, [f"{name}.weight"], 1000, "weight")
                 for name, t in types.items() if t in ("Linear", "Conv2d")]
    tl.models = [ModelInfo("Net", types, num_params, num_params, input_shape)]
    tl.optimizers = [optimizer]
    lr_of = lr if callable(lr) else (lambda _step: lr)
    tl.optimizer_hparams = {"lr": lr_of(0), "weight_decay": 0.0, **(hparams or {})}
    tl.train_loss_fn = "cross_entropy"
    for i, loss in enumerate(train_losses):
        rec = StepRecord(step=i, epoch=i // steps_per_epoch if steps_per_epoch else None, loss=loss, lr=lr_of(i))
        if update_ratios is not None and sampled(i):
            rec.update_ratio = update_ratios(i) if callable(update_ratios) else update_ratios
            rec.layer_update_ratios = [rec.update_ratio] * len(tl.layers)
        tl.steps.append(rec)
    tl.backward_calls = len(train_losses)
    if val_losses is not None or val_acc is not None:
        count = len(val_losses if val_losses is not None else val_acc)  # type: ignore[arg-type]
        epochs = list(val_epochs) if val_epochs is not None else list(range(count))
        spe = steps_per_epoch or 1
        for k, epoch in enumerate(epochs):
            tl.evaluations.append(EvalPass(
                step=(epoch + 1) * spe, epoch=epoch,
                loss=val_losses[k] if val_losses is not None else None,
                accuracy=val_acc[k] if val_acc is not None else None,
                samples=512, batches=4, loader="loader 2", loss_fn="cross_entropy",
            ))
    return tl


PARAMETERIZED = frozenset({"Linear", "Conv1d", "Conv2d", "Conv3d", "BatchNorm1d", "BatchNorm2d", "LayerNorm"})


def sequential_types(*types: str, root: str = "Sequential") -> dict[str, str]:
    """`module_types` of an nn.Sequential as the recorder names it: the root first, under its class
    name, then its children "0", "1", ... in the order the forward ran them."""
    return {root: root, **{str(i): t for i, t in enumerate(types)}}


def make_model_timeline(module_types: dict[str, str], steps: int = 30, lr: float = 0.05,
                        grad_norms: Sequence[float] | None = None) -> Timeline:
    """A run of `steps` optimizer steps at `lr` on a model of `module_types` (see sequential_types),
    with a gradient-norm layer for each module that owns parameters; the habits are left empty for
    the test to fill as the probes would."""
    layers = [LayerInfo(name, t, [f"{name}.weight", f"{name}.bias"], 1000,
                        "norm" if "Norm" in t else "weight")
              for name, t in module_types.items() if t in PARAMETERIZED]
    norms = list(grad_norms) if grad_norms is not None else [1.0] * steps
    tl = make_timeline(norms, lr=lr, layers=layers or None, module_types=module_types,
                       layer_norms=[[n] * len(layers) for n in norms] if layers else None)
    tl.train_loss_fn = "cross_entropy"
    return tl


def activation_steps(last: int) -> list[int]:
    """The steps the activation probe samples up to `last`: 1, 5, 10, 20, 50, then every 100th."""
    return [s for s in range(1, last + 1) if s in (1, 5, 10, 20, 50) or s % 100 == 0]


__all__ = ["Event", "EvalPass", "LayerInfo", "decay", "findings", "make_dynamics_timeline", "make_timeline",
           "noisy_curve", "sampled"]
