"""Per-class counts of a loss over class indices: how many labels of each class, how many
predictions (argmax), and how many of them right. They show a model that predicts only the majority
class of imbalanced labels (rules/class_imbalance.py) and give a segmentation pass its mean IoU.

The counts are one small tensor made on the device with a scatter-add (`torch.bincount` on CUDA
reads its input's maximum back first, a wait; `scatter_add_` does not), read back later with the
step's other sampled numbers (readback.py).
"""

from __future__ import annotations

from typing import Any

import torch

from ..timeline import LossPrior

CLASS_INDEX_LOSSES = frozenset({"cross_entropy", "nll_loss"})
MAX_CLASSES = 1000  # more is a language model's vocabulary: counting it is not worth the cost
DEFAULT_IGNORE_INDEX = -100  # F.cross_entropy's and F.nll_loss's default
DENSE_DIMS = 4  # (N, C, H, W) logits and more: one class per pixel (voxel)


def class_target(name: str, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """(logits, target, ignore_index) of a loss over class indices: logits (N, C, ...) with
    integer targets (N, ...); None for anything else."""
    if name not in CLASS_INDEX_LOSSES:
        return None
    logits = args[0] if args else kwargs.get("input")
    target = args[1] if len(args) > 1 else kwargs.get("target")
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor) or logits.dim() < 2:
        return None
    if target.is_floating_point() or target.is_complex() or tuple(target.shape) != (logits.shape[0], *logits.shape[2:]):
        return None
    ignore = kwargs.get("ignore_index", DEFAULT_IGNORE_INDEX)
    return logits, target, int(ignore) if isinstance(ignore, int) else DEFAULT_IGNORE_INDEX


def is_dense(logits: torch.Tensor) -> bool:
    return logits.dim() >= DENSE_DIMS


def class_stats(name: str, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """[labels per class..., predicted per class..., correct per class...] (3C floats, on the
    device) of one loss call over C <= MAX_CLASSES classes; positions whose target is the
    ignore_index count in none of them."""
    found = class_target(name, args, kwargs)
    if found is None:
        return None
    logits, target, ignore = found
    classes = int(logits.shape[1])
    if classes < 2 or classes > MAX_CLASSES:
        return None
    with torch.no_grad():
        labels = target.reshape(-1)
        counted = labels != ignore
        labels = labels.clamp(0, classes - 1)
        predicted = logits.detach().argmax(1).reshape(-1)
        right = counted & (predicted == labels)
        index = torch.cat([labels, predicted + classes, labels + 2 * classes])
        weights = torch.cat([counted, counted, right]).float()
        return torch.zeros(3 * classes, device=logits.device).scatter_add_(0, index, weights)


def decode_class_stats(step: int, values: list[float]) -> dict[str, Any]:
    c = len(values) // 3
    as_ints = [int(round(v)) for v in values]
    return {"step": step, "labels": as_ints[:c], "predicted": as_ints[c:2 * c], "correct": as_ints[2 * c:]}


def mean_iou(values: list[float]) -> float | None:
    """The mean IoU over the classes present in the target or the prediction, from summed
    class_stats: per class, intersection = correct and union = labels + predicted - correct."""
    c = len(values) // 3
    labels, predicted, correct = values[:c], values[c:2 * c], values[2 * c:]
    ious = [i / (lab + pred - i) for lab, pred, i in zip(labels, predicted, correct, strict=True) if lab + pred - i > 0]
    return sum(ious) / len(ious) if ious else None


def annotate_prior(prior: LossPrior, name: str, args: tuple, kwargs: dict) -> None:
    """Whether the training loss is over pixels (segmentation) and the target value it skips,
    when the script set one; from shapes and arguments only."""
    found = class_target(name, args, kwargs)
    if found is None:
        return
    logits, _, ignore = found
    prior.dense = is_dense(logits)
    if ignore != DEFAULT_IGNORE_INDEX:
        prior.ignore_index = ignore
