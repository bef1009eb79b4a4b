"""The model a train()/eval() mix-up happened on, and the layers that behave differently in the two
modes: what eval_mode_missing and train_mode_missing both judge."""

from __future__ import annotations

from dataclasses import dataclass

from ..layers import TRAIN_MODE_TYPES
from ..timeline import ModelInfo, Timeline


@dataclass
class ModeLayers:
    model: ModelInfo
    layers: dict[str, str]  # module name -> type, of the Dropout/BatchNorm layers
    kinds: list[str]  # their types, sorted
    name: str  # what the script calls the model ("model" when its variable name is not known)


def mode_layers(tl: Timeline, label: str | None) -> ModeLayers | None:
    """The model `label` names (its script name or class; else the first model) and its Dropout and
    BatchNorm layers; None when there is no model or it has none (both modes compute the same)."""
    model = next((m for m in tl.models if label is not None and label in (m.label, m.name)),
                 tl.models[0] if tl.models else None)
    if model is None:
        return None
    layers = {n: t for n, t in model.module_types.items() if t in TRAIN_MODE_TYPES}
    if not layers:
        return None
    # the script's own name for the model; its class name is no variable
    name = model.label if model.label.isidentifier() and model.label != model.name else "model"
    return ModeLayers(model, layers, sorted(set(layers.values())), name)
