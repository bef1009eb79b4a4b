"""Statistics taken on sampled steps only: the model's input, what the loss was given, activation
outputs, training accuracy and the update ratio. Each is a small tensor queued for the next
read-back (readback.py), so sampling never waits for the device."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..layers import RELU_TYPES, SATURATION_LIMITS, SATURATION_MARGIN, SATURATION_MARGINS
from ..probes.habits import (
    activation_stats,
    activations_due,
    decode_input,
    decode_loss_input,
    input_stats,
    loss_input_stats,
)
from ..probes.shared import Shared
from ..probes.updates import UpdateSampler, ratios
from ..timeline import MAX_HABIT_SAMPLES, StepRecord, Timeline
from .classes import annotate_prior, class_stats, decode_class_stats
from .evaluation import class_counts
from .readback import ReadbackQueue

MAX_ACTIVATION_SAMPLES = 400
FUNCTIONAL_RELUS = frozenset({torch.relu, torch.relu_, torch.nn.functional.relu, torch.Tensor.relu, torch.Tensor.relu_})


class FunctionalActivations(TorchFunctionMode):
    """Sees `F.relu(x)`, `torch.relu(x)`, `x.relu()` and `relu_` on a sampled forward (only
    then: every torch call passes through here while it is on), and samples their outputs like an
    `nn.ReLU`'s, named after the module whose forward made the call: `features F.relu#2`."""

    def __init__(self, sampling: Sampling, names: dict[int, str], step: int) -> None:
        super().__init__()
        self.sampling = sampling
        self.names = names
        self.step = step
        self.calls: dict[str, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in FUNCTIONAL_RELUS:
            try:
                owner = self._owner()
                if owner is not None:
                    self.calls[owner] = self.calls.get(owner, 0) + 1
                    self.sampling.sample(f"{owner} F.relu#{self.calls[owner]}", "ReLU", out, self.step)
            except Exception:  # observing must never fail the forward
                pass
        return out

    def _owner(self) -> str | None:
        """The innermost watched module whose forward is on the stack; None inside an nn.ReLU
        (its own module sample counts it)."""
        frame = sys._getframe(2)
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, torch.nn.Module):
                if type(owner).__name__ in RELU_TYPES:
                    return None
                name = self.names.get(id(owner))
                if name is not None:
                    return name
            frame = frame.f_back
        return None


class Sampling:
    def __init__(self, timeline: Timeline, shared: Shared, queue: ReadbackQueue) -> None:
        self.timeline = timeline
        self.shared = shared
        self.queue = queue
        self.updates = UpdateSampler()
        self.pending_accuracy: list[tuple[torch.Tensor, torch.Tensor]] = []  # (correct, counted) this step
        self.inputs_sampled: set[int] = set()
        self.activations_sampled: set[int] = set()
        self.functional: FunctionalActivations | None = None  # on while a sampled forward runs
        self.prior_annotated: object | None = None  # the LossPrior whose dense/ignore_index were set

    def due(self, step: int) -> bool:
        return self.updates.due(step)

    def on_training_forward(self, state: Any, args: tuple, step: int, compiled: bool = False) -> None:
        """A model's training forward starts: sample its input, and its activations, when due
        (the functional ReLUs too, except in compiled code, where a mode would recompile it)."""
        if args and self.updates.due(step) and step not in self.inputs_sampled:
            self._sample_input(args[0], step)
        if activations_due(step) and step not in self.activations_sampled:
            self.activations_sampled.add(step)
            self.shared.sampling_activations = state
            if not compiled and self.functional is None:
                mode = FunctionalActivations(self, state.module_names, step)
                mode.__enter__()
                self.functional = mode

    def end_forward(self) -> None:
        """The sampled forward returned or raised."""
        mode, self.functional = self.functional, None
        if mode is not None:
            mode.__exit__(None, None, None)

    def _sample_input(self, x: Any, step: int) -> None:
        """The model's input on sampled steps: raw 0-255 pixels and unscaled features show here."""
        self.inputs_sampled.add(step)
        inputs = self.timeline.habits.inputs
        if len(inputs) >= MAX_HABIT_SAMPLES:
            return
        stats = input_stats(x)
        if stats is None:
            return
        shape = list(x.shape) if isinstance(x, torch.Tensor) else [len(x), *x[0].shape]  # a list of images
        self.queue.add(stats, lambda v: inputs.append(decode_input(step, shape, v)))

    def on_activation(self, module: torch.nn.Module, output: Any, step: int) -> None:
        """A ReLU/Sigmoid/Tanh module's output on a sampled training forward."""
        kind = type(module).__name__
        state = self.shared.sampling_activations
        if state is None or (kind not in RELU_TYPES and kind not in SATURATION_LIMITS):
            return
        self.sample(state.module_names.get(id(module), kind), kind, output, step)

    def sample(self, name: str, kind: str, output: Any, step: int) -> None:
        """Queue one activation output's statistics under `name`."""
        found = self.timeline.habits.activations
        if len(found) >= MAX_ACTIVATION_SAMPLES:
            del found[: MAX_ACTIVATION_SAMPLES // 2]
        stats = activation_stats(kind, output)
        if stats is None:
            return
        units = output.shape[1]
        per_unit = output.numel() // units if units else 0  # the values each unit was seen on
        if kind in RELU_TYPES:
            def decode(v: list[float]) -> None:
                found.append({"step": step, "module": name, "type": kind, "dead": int(v[0]), "units": units,
                              "per_unit": per_unit})
        else:
            def decode(v: list[float]) -> None:
                shares = dict(zip(SATURATION_MARGINS, v, strict=True))
                found.append({"step": step, "module": name, "type": kind, "saturated": shares[SATURATION_MARGIN],
                              "saturated_at": shares})
        self.queue.add(stats, decode)

    def on_training_loss(self, name: str, args: tuple, kwargs: dict, step: int) -> None:
        """Training accuracy is a curve for the reports, no rule's input: sampled like the update
        ratio, it costs a dozen small ops on one step in ten instead of on every step. The
        per-class counts ride along (class_imbalance's input)."""
        prior = self.timeline.prior
        if prior is not None and prior is not self.prior_annotated:
            self.prior_annotated = prior
            annotate_prior(prior, name, args, kwargs)
        if not self.updates.due(step):
            return
        counts = class_counts(name, args, kwargs)
        if counts is not None:
            self.pending_accuracy.append(counts)
        self._sample_classes(name, args, kwargs, step)
        loss_inputs = self.timeline.habits.loss_inputs
        if len(loss_inputs) < MAX_HABIT_SAMPLES:
            stats = loss_input_stats(name, args)
            if stats is not None:
                self.queue.add(stats, lambda v: loss_inputs.append(decode_loss_input(step, name, v)))

    def _sample_classes(self, name: str, args: tuple, kwargs: dict, step: int) -> None:
        """Labels, predictions and correct predictions per class, kept for the latest sampled steps."""
        found = self.timeline.habits.classes
        stats = class_stats(name, args, kwargs)
        if stats is None:
            return
        if len(found) >= MAX_HABIT_SAMPLES:
            del found[: MAX_HABIT_SAMPLES // 2]
        self.queue.add(stats, lambda v: found.append(decode_class_stats(step, v)))

    def queue_accuracy(self, holder: dict[str, float | None]) -> None:
        """This step's training accuracy counts ride along with its read-back, into `holder`."""
        if not self.pending_accuracy:
            return
        correct = torch.stack([c.reshape(()) for c, _ in self.pending_accuracy]).sum()
        counted = torch.stack([n.reshape(()) for _, n in self.pending_accuracy]).sum()
        self.pending_accuracy = []

        def decode(v: list[float]) -> None:
            holder["accuracy"] = v[0] / v[1] if v[1] else None

        self.queue.add(torch.stack([correct, counted]).float(), decode)

    def before_update(self, params: list[torch.nn.Parameter], step: int) -> None:
        if self.updates.due(step):
            self.updates.capture(params)

    def after_update(self, params: list[torch.nn.Parameter], layer_of: list[int], record: StepRecord) -> None:
        """The weights moved: queue the update ratio of `record`'s step."""
        if self.updates.before is None:
            return
        measured = self.updates.measure(params, layer_of, len(self.timeline.layers))
        if measured is None:
            return
        layers = self.timeline.layers

        def decode(v: list[float]) -> None:
            record.update_ratio, record.layer_update_ratios = ratios(v, len(layers))

        self.queue.add(measured, decode)
