"""Numbers for the everyday mistakes, computed on the device on sampled steps only.

Each statistic is a small float tensor that rides along with the step's single read-back (see
probes/gradients.py); `decode_*` turns the values read back into the dict the timeline keeps.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch

from ..layers import RELU_TYPES, SATURATION_LIMITS, SATURATION_MARGINS
from ..timeline import LossPrior

MAX_CHANNELS = 4  # per-channel statistics for images with this many channels or fewer (RGB, grey)
PROBABILITY_LOSSES = frozenset({"cross_entropy"})  # apply log_softmax themselves
LOG_PROBABILITY_LOSSES = frozenset({"nll_loss"})  # expect log-probabilities
LOGIT_LOSSES = frozenset({"binary_cross_entropy_with_logits"})  # apply the sigmoid themselves


def input_stats(x: Any) -> torch.Tensor | None:
    """[min, max, mean, std, per-channel means..., per-channel stds...] of a float input batch;
    a detector's list of (C, H, W) images of their own sizes is summarised as the batch it is."""
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, torch.Tensor) and t.dim() == 3 for t in x) \
            and len({t.shape[0] for t in x}) == 1 and len(x) <= 256:
        x = torch.cat([t.detach().flatten(1) for t in x], dim=1).unsqueeze(0).unsqueeze(-1)  # (1, C, pixels, 1)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() < 2 or x.is_sparse:
        return None
    with torch.no_grad():
        # From per-channel sums and sums of squares in float64: torch.std_mean reads a CPU batch
        # five times slower (1 ms for 32x3x32x32 on two threads).
        t = x.detach()
        per_channel = t.dim() == 4 and t.shape[1] <= MAX_CHANNELS
        rows = t.transpose(0, 1).reshape(t.shape[1], -1) if per_channel else t.reshape(1, -1)
        sums = rows.sum(1, dtype=torch.float64)
        squares = torch.linalg.vector_norm(rows, 2, dim=1, dtype=torch.float64).square()
        n, total = rows.shape[1], t.numel()
        mean = sums.sum() / total
        std = ((squares.sum() - total * mean * mean) / (total - 1)).clamp_min(0).sqrt()
        low, high = torch.aminmax(t)
        parts = [low.double().reshape(1), high.double().reshape(1), mean.reshape(1), std.reshape(1)]
        if per_channel:
            c_mean = sums / n
            parts += [c_mean, ((squares - n * c_mean * c_mean) / max(n - 1, 1)).clamp_min(0).sqrt()]
        return torch.cat(parts).float()


def decode_input(step: int, shape: list[int], values: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"step": step, "shape": shape, "min": values[0], "max": values[1],
                           "mean": values[2], "std": values[3]}
    rest = values[4:]
    if rest:
        c = len(rest) // 2
        out["channel_mean"], out["channel_std"] = rest[:c], rest[c:]
    return out


def loss_input_stats(name: str, args: tuple) -> torch.Tensor | None:
    """What a classification loss was given, as the numbers that tell probabilities, log-
    probabilities and logits apart: for cross_entropy [min, max, max |row sum - 1|]; for nll_loss
    [max, max |logsumexp(row)|]; for binary_cross_entropy_with_logits [min, max, mean] (any shape:
    one output per sample or one per label)."""
    if name not in PROBABILITY_LOSSES | LOG_PROBABILITY_LOSSES | LOGIT_LOSSES or not args:
        return None
    x = args[0]
    if name in LOGIT_LOSSES:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() < 2:
            return None
        with torch.no_grad():
            t = x.detach().float()
            return torch.stack([t.amin(), t.amax(), t.mean()])
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[1] < 2:
        return None
    with torch.no_grad():
        t = x.detach().float()
        if name in PROBABILITY_LOSSES:
            return torch.stack([t.amin(), t.amax(), (t.sum(dim=1) - 1).abs().amax()])
        return torch.stack([t.amax(), t.logsumexp(dim=1).abs().amax()])


def decode_loss_input(step: int, name: str, values: list[float]) -> dict[str, Any]:
    if name in PROBABILITY_LOSSES:
        return {"step": step, "loss": name, "min": values[0], "max": values[1], "row_sum_error": values[2]}
    if name in LOGIT_LOSSES:
        return {"step": step, "loss": name, "min": values[0], "max": values[1], "mean": values[2]}
    return {"step": step, "loss": name, "max": values[0], "lse_error": values[1]}


CLASS_LOSSES = frozenset({"cross_entropy", "nll_loss"})
BINARY_LOSSES = frozenset({"binary_cross_entropy_with_logits", "binary_cross_entropy"})


def loss_prior(name: str, args: tuple, kwargs: dict) -> LossPrior | None:
    """The training loss's chance level, from shapes and arguments only (nothing is read from the
    device): ln(C) for a classification loss over C classes, ln(2) per element for a binary one.
    A uniform prediction scores exactly ln(C) with or without label smoothing and class weights
    (a weighted mean of -log(1/C)); they are kept because they move what a trained model reaches."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor):
        return None
    if name in CLASS_LOSSES and x.dim() >= 2 and x.shape[1] >= 2:
        classes = int(x.shape[1])
        weight = kwargs.get("weight", args[2] if len(args) > 2 else None)
        return LossPrior(name, classes, float(kwargs.get("label_smoothing", 0.0) or 0.0),
                         isinstance(weight, torch.Tensor), math.log(classes))
    if name in BINARY_LOSSES:
        weighted = isinstance(kwargs.get("weight"), torch.Tensor) or isinstance(kwargs.get("pos_weight"), torch.Tensor)
        return LossPrior(name, 2, 0.0, weighted, math.log(2))
    return LossPrior(name)


class GradCarry:
    """Were the gradients reset between two optimizer steps? The same gradient tensor, not
    zeroed in place (its version counter moved by no more than the backward passes that added
    into it) and no zero_grad() call: the old gradients are still in it."""

    def __init__(self) -> None:
        self.last: tuple[Any, int, int, int] | None = None  # (weakref to grad, version, zero calls, backwards)

    def check(self, params: list[torch.nn.Parameter], zero_calls: int, backwards: int) -> bool | None:
        """True: carried over; False: reset; None: nothing to compare yet."""
        grad = params[0].grad if params else None
        if grad is None:
            grad = next((p.grad for p in params if p.grad is not None), None)
        previous, self.last = self.last, None
        if grad is None:
            return None if previous is None else False
        try:
            self.last = (weakref.ref(grad), grad._version, zero_calls, backwards)
        except TypeError:
            return None
        if previous is None:
            return None
        ref, version, zeros, backs = previous
        if ref() is not grad or zeros != zero_calls:
            return False
        return grad._version - version <= backwards - backs


ACTIVATION_STEPS = frozenset({1, 5, 10, 20, 50})
ACTIVATION_EVERY = 100


def activations_due(step: int) -> bool:
    """Activation statistics are sampled: a few early steps (death comes early, with a high
    learning rate), then every 100th."""
    return step in ACTIVATION_STEPS or (step > 0 and step % ACTIVATION_EVERY == 0)


def activation_stats(kind: str, output: Any) -> torch.Tensor | None:
    """ReLU: [units never positive in the batch] (units: the channels, dim 1, of a batched
    output). Sigmoid/Tanh: [share of values within each of SATURATION_MARGINS of a limit]."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.dim() < 2:
        return None
    with torch.no_grad():
        t = output.detach()
        if kind in RELU_TYPES:
            dims = [d for d in range(t.dim()) if d != 1]
            # <= 0, not "not > 0": a NaN output (the run already diverged) is not a dead unit.
            return (t.amax(dim=dims) <= 0).sum().float().reshape(1)
        low, high = SATURATION_LIMITS[kind]
        return torch.stack([((t <= low + m) | (t >= high - m)).float().mean() for m in SATURATION_MARGINS])
