"""vanishing_gradients: early layers get gradients orders of magnitude smaller than late ones."""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..layers import SATURATING_ACTIVATIONS
from ..timeline import Timeline
from ._fixes import add_normalization
from ._numbers import median
from .base import NotEvaluated, Param, finding_for, rule

PARAMS = {
    "warn_ratio": Param(1e-3, "warning when first/last layer RMS gradient ratio is at or below this"),
    "error_ratio": Param(1e-5, "error when the ratio is at or below this"),
    "min_steps": Param(5, "steps with gradients needed before a verdict"),
    "min_layers": Param(3, "weight layers needed: two layers cannot show a vanishing trend"),
}


@rule("vanishing_gradients", Severity.ERROR, "Early layers' gradients are orders of magnitude smaller", PARAMS)
def vanishing_gradients(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the gradient reaching the first weight layer (conv/linear, in forward
    order) is orders of magnitude smaller than at the last one. Layers are compared by RMS
    gradient (L2 norm / sqrt(number of weights)), so big and small layers compare fairly;
    the ratio first/last is the median over the run. Warning at `warn_ratio` (1e-3), error at
    `error_ratio` (1e-5). Embedding and normalization layers are left out: their gradients
    are sparse or tiny by nature.

    Why it matters: each sigmoid/tanh multiplies the backward signal by at most 0.25/1, so a
    deep stack of them without normalization lets almost nothing reach the early layers,
    which then stop learning while the loss creeps down through the last layers only.

    What to do: ReLU-family activations instead of sigmoid/tanh in hidden layers,
    BatchNorm/LayerNorm between layers, an initialization matched to the activations the model
    uses (Xavier with calculate_gain's 1 for sigmoid, 5/3 for tanh; Kaiming for ReLU-like ones),
    or residual connections.
    """
    weights = [(i, layer) for i, layer in enumerate(tl.layers) if layer.kind == "weight"]
    if len(weights) < int(p["min_layers"]):
        raise NotEvaluated(f"{len(weights)} weight layers; needs at least {int(p['min_layers'])}")
    rms = {i: [(s, v / math.sqrt(max(layer.numel, 1))) for s, v in tl.layer_series(i)] for i, layer in weights}
    weights = [(i, layer) for i, layer in weights if rms[i]]
    if len(weights) < int(p["min_layers"]):
        raise NotEvaluated("too few layers received gradients")
    first_i, first = weights[0]
    last_i, last = weights[-1]
    last_by_step = dict(rms[last_i])
    ratios = [v / last_by_step[s] for s, v in rms[first_i] if last_by_step.get(s, 0) > 0]
    if len(ratios) < int(p["min_steps"]):
        raise NotEvaluated(f"{len(ratios)} steps with gradients in both end layers; needs {int(p['min_steps'])}")
    ratio = median(ratios)
    if ratio > p["warn_ratio"]:
        return
    severity = Severity.ERROR if ratio <= p["error_ratio"] else Severity.WARNING
    last_rms = median([v for _, v in rms[last_i]])
    per_layer = []
    for i, layer in weights:
        layer_rms = median([v for _, v in rms[i]])
        per_layer.append({
            "layer": layer.name, "type": layer.type,
            "norm": median([v for _, v in tl.layer_series(i)]),
            "rms": layer_rms, "ratio_to_last": layer_rms / last_rms if last_rms else None,
        })
    starved = [x["layer"] for x in per_layer
               if x["ratio_to_last"] is not None and x["ratio_to_last"] <= p["warn_ratio"]]
    model = tl.models[0] if tl.models else None
    saturating = model.modules_of_type(SATURATING_ACTIVATIONS) if model else []
    sat_types = sorted({model.module_types[n] for n in saturating}) if model else []
    fixes: list[Fix] = []
    if saturating:
        fixes.append(Fix(
            "change_activation",
            f"Replace the saturating activations ({', '.join(sat_types)} at {_names(saturating)}) in hidden "
            "layers with nn.ReLU (or nn.GELU / nn.LeakyReLU), with He (kaiming_normal_) initialization.",
            {"modules": saturating, "replace": sat_types, "with": "ReLU"},
            f"nn.ReLU()   # instead of {' / '.join(f'nn.{t}()' for t in sat_types)} between layers",
        ))
    norm_fix = add_normalization(tl)
    if norm_fix:
        fixes.append(norm_fix)
    fixes.append(_initialization(model.module_types if model else {}, tl, len(weights)))
    fixes.append(Fix("add_residual_connections",
                     "In deep stacks, add skip connections (out = x + block(x)) so gradients bypass layers.",
                     {}, "def forward(self, x):\n    return x + self.block(x)"))
    yield finding_for(
        "vanishing_gradients",
        f"Vanishing gradients: {first.name} gets {fmt(ratio)}x the gradient of {last.name} "
        f"(RMS, median over {len(ratios)} steps)",
        severity=severity,
        where=first.name,
        evidence={
            "ratio_first_last": ratio,
            "first_layer": first.name,
            "last_layer": last.name,
            "layers_below_threshold": starved,
            "per_layer": per_layer,
            "steps": len(ratios),
        },
        fixes=fixes,
    )


# The gain torch.nn.init.calculate_gain gives each saturating activation (Xavier/Glorot init), and the
# nonlinearity kaiming_normal_ takes for each ReLU-like one (He init; GELU/SiLU are near enough ReLU).
XAVIER_GAIN = {"Sigmoid": ("sigmoid", "1"), "Hardsigmoid": ("sigmoid", "1"), "LogSigmoid": ("sigmoid", "1"),
               "Tanh": ("tanh", "5/3"), "Hardtanh": ("tanh", "5/3"), "Softsign": ("tanh", "5/3")}
KAIMING = {"ReLU": "relu", "ReLU6": "relu", "GELU": "relu", "SiLU": "relu", "Mish": "relu", "ELU": "relu",
           "CELU": "relu", "PReLU": "leaky_relu", "RReLU": "leaky_relu", "LeakyReLU": "leaky_relu"}


def _initialization(types: dict[str, str], tl: Timeline, depth: int) -> Fix:
    """The init matched to the activations the model uses (issue 17: tanh's gain was recommended on
    a model of Sigmoids): the gain calculate_gain gives for the most used saturating one, He init for
    ReLU-like ones; the snippet names only the model's own layer types and activation."""
    used = list(types.values())
    saturating = sorted({t for t in used if t in XAVIER_GAIN}, key=lambda t: (-used.count(t), t))
    relu_like = sorted({t for t in used if t in KAIMING}, key=lambda t: (-used.count(t), t))
    layer_types = sorted({layer.type for layer in tl.layers if layer.kind == "weight"}) or ["Linear"]
    model = _model_name(tl)
    loop = (f"for m in {model}.modules():\n    if isinstance(m, "
            + (f"nn.{layer_types[0]}" if len(layer_types) == 1 else f"({', '.join(f'nn.{t}' for t in layer_types)})")
            + "):\n        ")
    keep = f"so the signal keeps its scale through {depth} layers"
    if saturating:
        act = saturating[0]
        name, gain = XAVIER_GAIN[act]
        text = (f"Initialize the weight layers with Xavier (xavier_uniform_, gain {gain}: "
                f"nn.init.calculate_gain('{name}') for {act}) {keep}.")
        if name == "sigmoid":
            normalized = bool(tl.models) and tl.models[0].has_normalization
            text += (" A gain cannot undo the sigmoid's slope of at most 1/4 per layer: better, switch the hidden "
                     "activations to ReLU/GELU with He (kaiming_normal_) init"
                     + ("." if normalized else ", or add normalization between the layers."))
        others = [t for t in saturating[1:] if XAVIER_GAIN[t][0] != name]
        if others:
            text += (f" The layers feeding {', '.join(others)} take gain "
                     f"{', '.join(XAVIER_GAIN[t][1] for t in others)} (calculate_gain('{XAVIER_GAIN[others[0]][0]}')).")
        return Fix("change_initialization", text, {"init": "xavier_uniform_", "activation": act, "gain": name},
                   loop + f"nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain('{name}'))")
    nonlinearity = KAIMING[relu_like[0]] if relu_like else "relu"
    act = relu_like[0] if relu_like else "ReLU-family activations"
    params = {"init": "kaiming_normal_", "nonlinearity": nonlinearity}
    if relu_like:
        params["activation"] = act
    return Fix("change_initialization",
               f"Initialize the weight layers with He (kaiming_normal_, nonlinearity='{nonlinearity}') for {act} "
               f"{keep}.", params,
               loop + f"nn.init.kaiming_normal_(m.weight, nonlinearity='{nonlinearity}')")


def _model_name(tl: Timeline) -> str:
    """What the script calls the model when a name for it was recorded; `model` otherwise."""
    first = tl.models[0] if tl.models else None
    label = first.label if first is not None and first.label != first.name else ""
    return label if label.isidentifier() else "model"


def _names(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
