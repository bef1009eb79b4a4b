"""Hand-made timelines: rules are pure functions of a timeline, so they test in milliseconds."""

from __future__ import annotations

from torchdoctor.config import Config
from torchdoctor.rules import REGISTRY
from torchdoctor.timeline import Event, LayerInfo, ModelInfo, StepRecord, Timeline


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


__all__ = ["Event", "LayerInfo", "findings", "make_timeline"]
