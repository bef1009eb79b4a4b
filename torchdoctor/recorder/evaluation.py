"""Evaluation passes: the losses a script computes without training on them, grouped into one
pass per data loader between two training steps, and whether the model was left in train() then.

Values stay on the device while a pass runs and are read back once when it closes, so a
validation loop costs one transfer, not one per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..timeline import EvalPass, Timeline
from .classes import class_stats, class_target, is_dense, mean_iou

if TYPE_CHECKING:
    from ..probes.shared import Shared
    from .loaders import Loaders
    from .models import Models

CLASSIFICATION_LOSSES = frozenset({"cross_entropy", "nll_loss"})
ELEMENTWISE_LOSSES = frozenset({"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                                "binary_cross_entropy_with_logits"})


@dataclass
class LossTerms:
    """One loss call, on the device: the loss summed over the batch, its sample count, and for a
    classification loss the correct predictions and the counted targets; for one over pixels
    (segmentation) the per-class counts (classes.class_stats) that make the pass's mean IoU."""

    loss_sum: torch.Tensor
    samples: int
    correct: torch.Tensor | None = None
    counted: torch.Tensor | None = None
    classes: torch.Tensor | None = None


def loss_terms(name: str, args: tuple, kwargs: dict, out: Any) -> LossTerms | None:
    """What one loss call contributes to a pass mean (None when it is not a per-batch loss)."""
    if not isinstance(out, torch.Tensor) or not args or not isinstance(args[0], torch.Tensor):
        return None
    inp = args[0]
    samples = int(inp.shape[0]) if inp.dim() > 0 else 1
    value = out.detach().float()
    reduction = kwargs.get("reduction", "mean")
    loss_sum = value.sum() if reduction == "sum" else value.mean() * samples
    terms = LossTerms(loss_sum, samples)
    counts = class_counts(name, args, kwargs)
    if counts is not None:
        terms.correct, terms.counted = counts
        found = class_target(name, args, kwargs)
        if found is not None and is_dense(found[0]):
            terms.classes = class_stats(name, args, kwargs)
    return terms


def class_counts(name: str, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(correct predictions, counted targets) of a classification loss call, on the device."""
    if name not in CLASSIFICATION_LOSSES or not args or not isinstance(args[0], torch.Tensor):
        return None
    inp = args[0]
    target = args[1] if len(args) > 1 else kwargs.get("target")
    if not isinstance(target, torch.Tensor) or not is_class_target(inp, target):
        return None
    counted = target != kwargs.get("ignore_index", -100)
    return ((inp.detach().argmax(1) == target) & counted).sum(), counted.sum()


def is_class_target(logits: torch.Tensor, target: torch.Tensor) -> bool:
    """Logits (N, C, ...) with class indices (N, ...): the case where accuracy means something."""
    return (logits.dim() >= 2 and not target.is_floating_point() and not target.is_complex()
            and tuple(target.shape) == (logits.shape[0], *logits.shape[2:]))


def derivable(name: str | None, output: Any, target: Any) -> bool:
    """Whether the training loss can be applied to an evaluation forward's output and target."""
    if name is None or not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        return False
    if name in CLASSIFICATION_LOSSES:
        return is_class_target(output, target)
    if name in ELEMENTWISE_LOSSES:
        return output.shape == target.shape and target.is_floating_point()
    return False


@dataclass
class OpenPass:
    loader: int | None  # id of the loader its batches come from, None for tensors fed directly
    step: int
    epoch: int | None
    loss_fn: str | None = None
    terms: list[LossTerms] = field(default_factory=list)
    # Losses computed with gradients on while the model was in eval(): evaluation, unless a
    # backward() follows (a fine-tuning step with frozen BatchNorm statistics).
    tentative: list[LossTerms] = field(default_factory=list)
    derived: list[LossTerms] = field(default_factory=list)  # the training loss applied by us


class EvalTracker:
    def __init__(self) -> None:
        self.open: OpenPass | None = None
        self.passes: list[OpenPass] = []

    @property
    def pending(self) -> bool:
        """An evaluation pass is open, or closed and not yet read back."""
        return self.open is not None or bool(self.passes)

    def current(self, loader: int | None, step: int, epoch: int | None) -> OpenPass:
        """The open pass for batches of `loader`, opening a new one when the loader changed."""
        if self.open is not None and self.open.loader != loader:
            self.close()
        if self.open is None:
            self.open = OpenPass(loader, step, epoch)
        return self.open

    def add_loss(self, loader: int | None, step: int, epoch: int | None, name: str, terms: LossTerms,
                 tentative: bool) -> None:
        current = self.current(loader, step, epoch)
        current.loss_fn = current.loss_fn or name
        (current.tentative if tentative else current.terms).append(terms)
        current.derived.clear()

    def add_derived(self, loader: int | None, step: int, epoch: int | None, name: str, terms: LossTerms) -> None:
        current = self.current(loader, step, epoch)
        if current.terms or current.tentative:
            return
        current.loss_fn = current.loss_fn or name
        current.derived.append(terms)

    def on_backward(self) -> None:
        """A backward() after losses computed with gradients on: they were training, not evaluation."""
        if self.open is not None:
            self.open.tentative.clear()

    def restart(self, loader: int) -> None:
        """A new pass over the loader whose pass is open: the open one is complete."""
        if self.open is not None and self.open.loader == loader:
            self.close()

    def close(self) -> None:
        if self.open is not None:
            self.passes.append(self.open)
            self.open = None

    def drain(self, loader_names: dict[int, str], train_loader: int | None) -> list[EvalPass]:
        """The closed passes as timeline records; one read-back for all of them."""
        closed, self.passes = self.passes, []
        # A second pass over a loader already evaluated with its losses seen (a loop that counts
        # accuracy by hand) is the same evaluation again: only passes with no loss of their own
        # fall back on the derived loss.
        measured = {(p.step, p.loader) for p in closed if p.terms or p.tentative}
        out = []
        for p in closed:
            terms = p.terms + p.tentative
            if not terms and (p.step, p.loader) not in measured:
                terms = p.derived
            if not terms:
                continue
            values = [t.loss_sum.reshape(1) for t in terms]
            classified = [t for t in terms if t.correct is not None]
            if classified and len(classified) == len(terms):
                values += [t.correct.reshape(1) for t in classified] + [t.counted.reshape(1) for t in classified]
            device = values[0].device
            dense = [t.classes for t in terms if t.classes is not None]
            iou_values = 0
            if dense and len(dense) == len(terms) and len({d.numel() for d in dense}) == 1:
                values.append(torch.stack(dense).sum(0))  # intersections and unions summed over the pass
                iou_values = dense[0].numel()
            host = torch.cat([v.float().to(device) for v in values]).tolist()
            iou = None
            if iou_values:
                iou, host = mean_iou(host[-iou_values:]), host[:-iou_values]
            n = len(terms)
            samples = sum(t.samples for t in terms)
            accuracy = None
            if len(host) > n:
                counted = sum(host[2 * n:])
                accuracy = sum(host[n:2 * n]) / counted if counted else None
            if p.loader is None:
                loader = None
            elif p.loader == train_loader:
                loader = "train"
            else:
                loader = loader_names.get(p.loader, "loader")
            out.append(EvalPass(
                step=p.step, epoch=p.epoch, loss=sum(host[:n]) / samples if samples else None,
                accuracy=accuracy, samples=samples, batches=n, loader=loader,
                source="loss" if (p.terms or p.tentative) else "derived", loss_fn=p.loss_fn, iou=iou,
            ))
        return out


class Evaluation:
    """Sorts the script's forwards and losses into evaluation passes."""

    def __init__(self, timeline: Timeline, models: Models, loaders: Loaders, shared: Shared) -> None:
        self.timeline = timeline
        self.models = models
        self.loaders = loaders
        self.shared = shared
        self.tracker = EvalTracker()
        self.mode_noted = False  # the last forward's evaluation loss was counted

    def context(self, step: int) -> tuple[int | None, int, int | None]:
        """(loader, step, epoch) an evaluation loss belongs to: the loader of a batch fetched since
        the last step (None: tensors fed directly), the steps done, the last step's epoch."""
        epoch = self.timeline.steps[-1].epoch if self.timeline.steps else None
        return self.loaders.batch_loader, step, epoch

    def on_loss(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor, model: Any, step: int) -> None:
        """A loss computed without training on it (no gradient, or the model in eval())."""
        self.note_mode(model, step)
        terms = loss_terms(name, args, kwargs, out)
        if terms is not None:
            self.tracker.add_loss(*self.context(step), name, terms, tentative=out.requires_grad)

    def on_forward(self, output: Any, model: Any, step: int) -> None:
        """A forward in evaluation mode. If the script computes no loss on it (validation written
        by hand), the training loss is applied to the output and the batch's target, when the
        batch is an (input, target) pair that fits it."""
        self.timeline.eval_forwards += 1
        name = self.timeline.train_loss_fn
        batch = self.loaders.last_batch if self.loaders.batch_since_step else None
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return  # eval() with gradients on is also how some fine-tune: only a loss call tells
        if name is None or not isinstance(batch, (list, tuple)) or len(batch) != 2:
            return
        target = batch[1]
        if isinstance(output, dict) and isinstance(output.get("out"), torch.Tensor):
            output = output["out"]  # a torchvision segmentation model's {"out", "aux"}
        if not isinstance(target, torch.Tensor) or not isinstance(output, torch.Tensor):
            return
        target = target.to(output.device, non_blocking=True)
        function = self.shared.loss_functions.get(name)
        if function is None or not derivable(name, output, target):
            return
        kwargs = {}
        if name in CLASSIFICATION_LOSSES:
            # The training loss's ignore_index, and any label it could not score ignored too: a
            # derived loss must never raise (on CUDA an out-of-range index is a device assert).
            prior = self.timeline.prior
            ignore = prior.ignore_index if prior is not None and prior.ignore_index is not None else -100
            classes = output.shape[1]
            target = target.masked_fill((target < 0) | (target >= classes), ignore)
            kwargs["ignore_index"] = ignore
        with torch.no_grad():
            value = function(output.detach(), target, **kwargs)
        terms = loss_terms(name, (output, target), kwargs, value)
        if terms is not None:
            self.note_mode(model, step)
            self.tracker.add_derived(*self.context(step), name, terms)

    def note_mode(self, model: torch.nn.Module | None, step: int) -> None:
        """An evaluation loss: was the model left in train() (dropout on, batch statistics used)?"""
        if model is None or not model.training or (torch.is_grad_enabled() and not torch.is_inference_mode_enabled()):
            return
        if self.mode_noted:  # the loss derived for this forward and the script's own loss on it
            return
        self.mode_noted = True
        habits = self.timeline.habits
        habits.eval_in_train_mode += 1
        if habits.eval_in_train_mode_step is None:
            habits.eval_in_train_mode_step = step
            state = self.models.roots.get(id(model))
            habits.eval_model = state.module_names.get(id(model)) if state is not None else type(model).__name__
            find = self.shared.evaluation_site
            site = find() if find is not None else None
            if site is not None:
                self.timeline.sources["evaluation"] = site  # where eval_mode_missing's fix goes

    def drain(self) -> None:
        self.tracker.close()
        self.timeline.evaluations.extend(self.tracker.drain(self.loaders.names, self.loaders.train_loader))
