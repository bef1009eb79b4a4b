"""The HTML report's plots of runs with more than one loss: one line per loss term (a detector's
dict of losses) and the total, or one per model (a GAN's discriminator and generator), the
validation mean IoU of a segmentation run, and the generator's output diversity.

Drawn from the JSON report alone, as `plots` draws, so a saved report renders like a live one.
`loss_series` says what the loss plot draws, by label: the page's caption and the tests read it
instead of decoding the PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import plots
from .plots import _get, _pairs, number

TOTAL_COLOR = "#222222"
VAL_COLOR = "#e67e22"


def _role_label(data: dict[str, Any], name: str) -> str:
    """A model's name with its role, when the name does not say it already: `netD (discriminator)`."""
    roles = _get(data, "metrics", "roles") or {}
    for role in ("generator", "discriminator"):
        if roles.get(role) == name and role not in name.lower():
            return f"{name} ({role})"
    return name


def loss_series(data: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """The training-loss lines of a run with several losses, by legend label: each model's loss,
    or the total and each term; empty for a plain one-loss run (the ordinary loss plot draws it)."""
    models = {name: _pairs(rows) for name, rows in (_get(data, "metrics", "loss", "models") or {}).items()}
    terms = {name: _pairs(rows) for name, rows in (_get(data, "metrics", "loss", "terms") or {}).items()}
    models = {name: points for name, points in models.items() if points}
    terms = {name: points for name, points in terms.items() if points}
    if len(models) + len(terms) < 2:
        return {}
    out: dict[str, list[tuple[float, float]]] = {}
    if models:
        out.update({f"{_role_label(data, name)} loss": points for name, points in models.items()})
    if terms:
        total = _pairs(_get(data, "metrics", "loss", "train"))
        if total and not models:  # a GAN's step loss is one model's, already drawn as such
            out["total loss"] = total
        out.update(terms)
    return out


def loss_caption(data: dict[str, Any]) -> str:
    """What the loss plot shows, in words: the series it draws are named, so a reader without the
    image (and a test) knows them."""
    series = loss_series(data)
    if not series:
        return "Loss per step; dashed red lines mark the findings' steps, red shading where the loss was NaN/Inf."
    return (f"Loss per step, one line per series ({', '.join(series)}); dashed red lines mark the findings' steps, "
            "red shading where a loss was NaN/Inf.")


def loss_plot(data: dict[str, Any]) -> bytes | None:
    """One line per loss series with a legend, the validation loss beside them; a plain one-loss
    run gets `plots.loss_plot`."""
    series = loss_series(data)
    if not series:
        return plots.loss_plot(data)
    fig = plots._figure(3.8)
    ax = fig.add_subplot()
    drawn: list[float] = []
    shaded = False
    for label, points in series.items():
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        if finite:
            style = {"color": TOTAL_COLOR, "linewidth": 1.8} if label == "total loss" else {"linewidth": 1.2}
            ax.plot(*zip(*finite, strict=True), label=label, **style)
            drawn += [v for _, v in finite]
        if not shaded:  # one shading, from the first series that went non-finite
            shaded = plots._mark_nonfinite(ax, points)
    val = [(s, v) for s, v in _pairs(_get(data, "metrics", "loss", "val_by_step")) if math.isfinite(v)]
    if val:
        ax.plot(*zip(*val, strict=True), color=VAL_COLOR, marker="o", markersize=4, linewidth=1.2,
                label="validation loss")
        drawn += [v for _, v in val]
    if plots._spans_decades(drawn):  # a detector's terms differ by orders of magnitude
        ax.set_yscale("log")
    _finish(ax, data, "loss")
    return plots._png(fig)


def iou_series(data: dict[str, Any]) -> list[tuple[float, float]]:
    """(step, mean IoU) of the validation passes. `metrics.iou.val` is keyed by epoch where known,
    as the contract's validation series are; the step comes from the evaluation it was measured on."""
    by_step = _pairs(_get(data, "metrics", "iou", "val_by_step"))
    if by_step:
        return by_step
    wanted = {(number(when), number(iou)) for when, iou in _pairs(_get(data, "metrics", "iou", "val"))}
    out = []
    for e in _get(data, "metrics", "evaluations") or []:
        iou, when = number(e.get("iou")), number(e.get("epoch") if e.get("epoch") is not None else e.get("step"))
        if (when, iou) in wanted:
            out.append((number(e.get("step")), iou))
            wanted.discard((when, iou))
    return out


def iou_plot(data: dict[str, Any]) -> bytes | None:
    """Validation mean IoU against step, when a segmentation run measured it: the metric its
    overfitting and plateau judgements read."""
    points = [(s, v) for s, v in iou_series(data) if math.isfinite(s) and math.isfinite(v)]
    if not points:
        return None
    fig = plots._figure(3.0)
    ax = fig.add_subplot()
    ax.plot(*zip(*points, strict=True), color=VAL_COLOR, marker="o", markersize=4, linewidth=1.2,
            label="validation mean IoU")
    _finish(ax, data, "mean IoU")
    return plots._png(fig)


def diversity_plot(data: dict[str, Any]) -> bytes | None:
    """The generator's output diversity on the sampled steps: a collapsing generator's falls to 0."""
    points = [(s, v) for s, v in _pairs(_get(data, "metrics", "diversity")) if math.isfinite(v)]
    if not points:
        return None
    fig = plots._figure(2.6)
    ax = fig.add_subplot()
    ax.plot(*zip(*points, strict=True), color="#8e44ad", marker="o", markersize=3, linewidth=1.2,
            label="generator output diversity (sampled steps)")
    ax.set_ylim(bottom=0)
    _finish(ax, data, "diversity")
    return plots._png(fig)


def extra_plots(data: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], bytes | None], str]]:
    """(title, plot, caption) of the plots only some runs have, a segmentation run's mean IoU and a
    GAN's output diversity: a page without them gets no "not drawn" line for each."""
    out = []
    if iou_series(data):
        out.append(("Mean IoU", iou_plot, "Validation mean IoU per step."))
    if _get(data, "metrics", "diversity"):
        out.append(("Generator diversity", diversity_plot,
                    "The spread of the generator's outputs across a batch on sampled steps; near 0: collapsed."))
    return out


def _finish(ax, data: dict[str, Any], ylabel: str) -> None:
    plots._mark_findings(ax, data)
    plots._integer_steps(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
