"""Fixes more than one rule prescribes, with their numbers derived from the run."""

from __future__ import annotations

from ..findings import Fix
from ..timeline import Timeline
from ._numbers import fmt, median, nice


def label(tl: Timeline, name: str) -> str:
    """A module path as a person recognises it: `features.3 (Conv2d)`."""
    kind = tl.module_type(name)
    return f"{name} ({kind})" if kind and kind != name else name


def lr_before(tl: Timeline, step: int | None) -> float | None:
    """The learning rate in force at (or just before) a step."""
    lr = None
    for rec in tl.steps:
        if step is not None and rec.step > step:
            break
        if rec.lr is not None:
            lr = rec.lr
    return lr if lr is not None else tl.last_lr


def lower_learning_rate(tl: Timeline, step: int | None, factor: float = 10.0) -> Fix | None:
    lr = lr_before(tl, step)
    if not lr:
        return None
    new = nice(lr / factor)
    opt = tl.optimizers[0] if tl.optimizers else "SGD"
    return Fix(
        "lower_learning_rate",
        f"Lower the learning rate {factor:g}x, from {fmt(lr)} to {fmt(new)}.",
        {"lr": new, "current_lr": lr},
        f"optimizer = torch.optim.{opt}(model.parameters(), lr={new:g})",
    )


def healthy_norms(tl: Timeline, until_step: int | None) -> list[float]:
    return [v for s, v in tl.grad_norm_series() if until_step is None or s < until_step]


def clip_gradients(tl: Timeline, until_step: int | None) -> Fix | None:
    """max_norm at twice the median norm of the healthy steps: typical steps pass untouched,
    spikes are cut. The median, unlike a high percentile, is not dragged up by early spikes."""
    norms = healthy_norms(tl, until_step)
    if len(norms) < 3:
        return None
    max_norm = nice(2 * median(norms))
    if not max_norm or max_norm <= 0:
        return None
    span = f"steps 0-{until_step - 1}" if until_step else "the run"
    return Fix(
        "clip_gradients",
        f"Clip the gradient norm at {fmt(max_norm)} (twice the median total norm of the healthy "
        f"{span}), between backward() and step().",
        {"max_norm": max_norm},
        f"loss.backward()\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={max_norm:g})\n"
        "optimizer.step()",
    )


def add_normalization(tl: Timeline) -> Fix | None:
    model = next((m for m in tl.models), None)
    if model is None or model.has_normalization:
        return None
    convs = [n for n, t in model.module_types.items() if t.startswith("Conv")]
    linears = [n for n, t in model.module_types.items() if t == "Linear"]
    if convs:
        where, layer = convs, "nn.BatchNorm2d(out_channels)"
    elif linears[:-1]:
        where, layer = linears[:-1], "nn.BatchNorm1d(out_features) or nn.LayerNorm(out_features)"
    else:
        return None
    shown = ", ".join(label(tl, n) for n in where[:4]) + (" ..." if len(where) > 4 else "")
    return Fix(
        "add_normalization",
        f"The model has no normalization layer: add {layer} after {shown}.",
        {"after": where},
        "nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())"
        if convs else "nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.ReLU())",
    )


