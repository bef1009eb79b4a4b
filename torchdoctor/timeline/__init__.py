"""The record of a run: what the probes saw, step by step, in plain Python values.

Rules read only this, never torch, so a rule can be tested on a hand-made timeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .memory import MemoryInfo, MemoryProfile, MemorySample, ModuleMemory
from .records import (
    MAX_HABIT_SAMPLES,
    AmpInfo,
    EvalPass,
    Event,
    Habits,
    LayerInfo,
    LossPrior,
    ModelInfo,
    Phase,
    Roles,
    RunInfo,
    StepRecord,
)

__all__ = ["MAX_HABIT_SAMPLES", "AmpInfo", "EvalPass", "Event", "Habits", "LayerInfo", "LossPrior", "MemoryInfo",
           "MemoryProfile", "MemorySample", "ModelInfo", "ModuleMemory", "Phase", "Roles", "RunInfo",
           "StepRecord", "Timeline", "TASKS"]

TASKS = ("classification", "detection", "segmentation", "generation", "other")
CLASS_LOSSES = frozenset({"cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                          "multilabel_soft_margin_loss", "multi_margin_loss", "multilabel_margin_loss",
                          "linear_cross_entropy"})

T = TypeVar("T", bound=tuple)

MAX_STEPS = 20_000  # step records kept; beyond it the older history is thinned
RECENT_STEPS = 5_000  # the most recent steps are always kept at full resolution
EARLY_STEPS = 1_000  # and so are the first ones


@dataclass
class Timeline:
    run: RunInfo = field(default_factory=RunInfo)
    models: list[ModelInfo] = field(default_factory=list)
    layers: list[LayerInfo] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    optimizers: list[str] = field(default_factory=list)
    # Hyperparameters of the counted optimizer's first param group at its first step (lr, weight_decay,
    # momentum, betas...), for fixes that derive numbers from them.
    optimizer_hparams: dict[str, Any] = field(default_factory=dict)
    evaluations: list[EvalPass] = field(default_factory=list)
    train_loss_fn: str | None = None  # the loss function the training steps backwarded, e.g. "cross_entropy"
    eval_forwards: int = 0  # model forwards in evaluation mode (no_grad, inference_mode or eval())
    backward_calls: int = 0
    memory: MemoryInfo = field(default_factory=MemoryInfo)
    amp: AmpInfo = field(default_factory=AmpInfo)
    habits: Habits = field(default_factory=Habits)
    prior: LossPrior | None = None  # of the training loss, from its first call
    # Where the probes saw training change (a new optimizer, other parameters, another dataset);
    # `phases()` adds the learning-rate restarts, which the lr series shows.
    phase_starts: list[Phase] = field(default_factory=list)
    roles: Roles = field(default_factory=Roles)
    # The names of the loss parts a model returned as a dict, each with the module that made it
    # (a detector's `roi_heads`, `rpn`), where known.
    loss_terms: dict[str, str | None] = field(default_factory=dict)
    # Where in the user's code each thing the fixes change was made, recorded from the stack when
    # a probe first saw it: {"optimizer": {"file", "line", "text"}, "loss": ..., "loader": ...}.
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)

    def add_step(self, record: StepRecord) -> None:
        """Keep the first and the most recent steps whole and thin the middle: past MAX_STEPS
        records the middle is halved, so a million-step run holds a bounded record while the
        rules still see how the run started (its first steps) and how it is going now."""
        self.steps.append(record)
        if len(self.steps) > MAX_STEPS:
            early, middle = self.steps[:EARLY_STEPS], self.steps[EARLY_STEPS:-RECENT_STEPS]
            self.steps = early + middle[::2] + self.steps[-RECENT_STEPS:]

    # -- queries rules use -------------------------------------------------
    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def layer_series(self, index: int) -> list[tuple[int, float]]:
        """(step, norm) for one layer, finite values only."""
        out = []
        for rec in self.steps:
            norms = rec.layer_grad_norms
            if norms is not None and index < len(norms):
                v = norms[index]
                if v is not None and math.isfinite(v):
                    out.append((rec.step, v))
        return out

    def grad_norm_series(self) -> list[tuple[int, float]]:
        return [
            (r.step, r.grad_norm)
            for r in self.steps
            if r.grad_norm is not None and math.isfinite(r.grad_norm)
        ]

    def loss_series(self) -> list[tuple[int, float]]:
        return [(r.step, r.loss) for r in self.steps if r.loss is not None]

    def term_series(self) -> dict[str, list[tuple[int, float]]]:
        """(step, value) of each loss part a model returned as a dict, by name, in first-seen order."""
        return self._named_series("terms")

    def model_loss_series(self) -> dict[str, list[tuple[int, float]]]:
        """(step, loss) of each model trained by its own optimizer (a GAN's), by model name."""
        return self._named_series("model_losses")

    def _named_series(self, attribute: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for r in self.steps:
            for name, value in (getattr(r, attribute) or {}).items():
                out.setdefault(name, []).append((r.step, value))
        return out

    def model_grad_norms(self, model: str) -> list[tuple[int, float]]:
        """(step, L2 norm) of one model's gradients, from its layers' norms."""
        index = [i for i, layer in enumerate(self.layers) if layer.model == model]
        out = []
        for r in self.steps:
            norms = r.layer_grad_norms
            if not norms:
                continue
            values = [norms[i] for i in index if i < len(norms) and norms[i] is not None]
            if values and all(math.isfinite(v) for v in values):
                out.append((r.step, math.sqrt(sum(v * v for v in values))))
        return out

    @property
    def task(self) -> str:
        """What the run trains, from what the probes saw: a generator feeding a discriminator is
        generation; a detector's targets (boxes) detection; one class per pixel segmentation; a
        loss over classes classification; anything else other."""
        if self.run.task in TASKS:
            return self.run.task
        if self.roles.generator is not None and self.roles.discriminator is not None:
            return "generation"
        if self.habits.targets == "boxes":
            return "detection"
        prior = self.prior
        if prior is not None and prior.dense and prior.loss_fn in ("cross_entropy", "nll_loss"):
            return "segmentation"
        if self.habits.targets == "masks":
            return "segmentation"
        if prior is not None and prior.loss_fn in CLASS_LOSSES or self.train_loss_fn in CLASS_LOSSES:
            return "classification"
        return "other"

    def validation(self) -> list[EvalPass]:
        """The evaluations of the validation set: those logged with `doctor.log(val_loss=...)` if any;
        else, of the loaders evaluated apart from the training loader, the one evaluated first (a
        test set evaluated once at the end comes after it)."""
        logged = [e for e in self.evaluations if e.source == "log"]
        if logged:  # what the script told us beats what was inferred
            return logged
        kept = [e for e in self.evaluations if e.loader != "train" and e.loss is not None]
        if not kept:
            return []
        first = kept[0].loader
        return [e for e in kept if e.loader == first]

    def train_loss_at(self, evaluations: list[EvalPass]) -> list[float | None]:
        """For each evaluation, the mean finite training loss of the steps since the one before it
        (the training curve sampled where the validation curve is)."""
        out: list[float | None] = []
        start = 0
        for ev in evaluations:
            values = [r.loss for r in self.steps
                      if start <= r.step < ev.step and r.loss is not None and math.isfinite(r.loss)]
            out.append(sum(values) / len(values) if values else None)
            start = ev.step
        return out

    def module_type(self, name: str) -> str | None:
        for m in self.models:
            if name in m.module_types:
                return m.module_types[name]
        return None

    def label(self, name: str) -> str:
        """A module path as a person recognises it: `features.3 (Conv2d)`."""
        kind = self.module_type(name)
        return f"{name} ({kind})" if kind and kind != name else name

    def last_modules(self) -> list[tuple[str, str]]:
        """(name, type) of the last module each model's forward ran (its output layer)."""
        return [list(m.module_types.items())[-1] for m in self.models if m.module_types]

    def first_module(self, skip: frozenset[str] | set[str] = frozenset()) -> tuple[str, str] | None:
        """(name, type) of the first module the first model's forward called, past the root and
        any of the `skip` types (containers)."""
        for model in self.models:
            for name, kind in list(model.module_types.items())[1:]:
                if kind not in skip:
                    return name, kind
        return None

    def finite_losses(self) -> list[tuple[int, float]]:
        """(step, loss) up to the first non-finite loss: what came after it is nonfinite_loss's."""
        out = []
        for step, value in self.loss_series():
            if not math.isfinite(value):
                break
            out.append((step, value))
        return out

    def lr_at(self, step: int | None) -> float | None:
        """The learning rate in force at (or just before) a step."""
        lr = None
        for rec in self.steps:
            if step is not None and rec.step > step:
                break
            if rec.lr is not None:
                lr = rec.lr
        return lr if lr is not None else self.last_lr

    def lrs_between(self, first_step: int, last_step: int) -> list[float]:
        return [r.lr for r in self.steps if r.lr is not None and first_step <= r.step <= last_step]

    def optimizer_name(self, default: str | None = "SGD") -> str | None:
        """The class of the optimizer the steps were counted on, for the snippets of fixes."""
        return self.optimizers[0] if self.optimizers else default

    def first_loss(self) -> float | None:
        """The loss at the first step: the run's own prior for what "worse than the start" means."""
        for rec in self.steps:
            if rec.loss is not None and math.isfinite(rec.loss):
                return rec.loss
        return None

    def phases(self, restart_factor: float = 2.0) -> list[Phase]:
        """The run's phases in step order: the start, what the probes saw change, and each warm
        restart of the learning rate (the lr jumping up by `restart_factor` or more in one step
        after it had decayed)."""
        out = [Phase(self.steps[0].step if self.steps else 0, "start")]
        out += [p for p in self.phase_starts if p.step > out[0].step]
        previous = None
        for rec in self.steps:
            if rec.lr is not None and previous is not None and previous > 0 and rec.lr >= restart_factor * previous:
                out.append(Phase(rec.step, "lr_restart"))
            if rec.lr is not None:
                previous = rec.lr
        out.sort(key=lambda p: p.step)
        merged: list[Phase] = []
        for p in out:
            if merged and p.step == merged[-1].step:
                continue  # one boundary, its first reason
            merged.append(p)
        return merged

    def by_phase(self, items: Sequence[T]) -> list[tuple[int, Phase, list[T]]]:
        """(index, phase, its items) for each phase that has items; an item is a tuple whose first
        element is its step, such as a (step, loss) series."""
        phases = self.phases()
        out = []
        for index, phase in enumerate(phases):
            end = phases[index + 1].step if index + 1 < len(phases) else None
            part = [item for item in items if item[0] >= phase.step and (end is None or item[0] < end)]
            if part:
                out.append((index, phase, part))
        return out

    def phase_of(self, step: int) -> tuple[int, Phase]:
        """(index, phase) of the phase a step belongs to."""
        phases = self.phases()
        index = max((i for i, p in enumerate(phases) if p.step <= step), default=0)
        return index, phases[index]

    @property
    def last_lr(self) -> float | None:
        for rec in reversed(self.steps):
            if rec.lr is not None:
                return rec.lr
        return None
