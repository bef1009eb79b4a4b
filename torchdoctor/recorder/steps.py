"""Step accounting: the losses backwarded since the last step, and at each optimizer step one
read-back of everything the step measured (its loss, gradient norms, what was queued)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ..probes.gradients import StepNumbers, measure_step, norms_due
from ..timeline import StepRecord, Timeline
from .evaluation import Evaluation
from .failures import Failures
from .loaders import Loaders
from .manual import ManualUpdates
from .memory import MemoryWatch
from .models import Models
from .optimizers import Optimizers, current_lr, hparams
from .phases import PhaseWatch
from .readback import ReadbackQueue, read_now_of
from .roles import Roles
from .sampling import Sampling
from .terms import LossParts


class Steps:
    def __init__(self, timeline: Timeline, models: Models, loaders: Loaders, optimizers: Optimizers,
                 evaluation: Evaluation, sampling: Sampling, failures: Failures, memory: MemoryWatch,
                 queue: ReadbackQueue, parts: LossParts, roles: Roles) -> None:
        self.timeline = timeline
        self.models = models
        self.loaders = loaders
        self.optimizers = optimizers
        self.evaluation = evaluation
        self.sampling = sampling
        self.failures = failures
        self.memory = memory
        self.queue = queue
        self.parts = parts
        self.roles = roles
        self.phases = PhaseWatch(timeline)
        self.manual = ManualUpdates(models)
        # The parameters of the last hand-made step, and its record: its update ratio is measured
        # at the next backward(), once the script has moved the weights.
        self.manual_last: tuple[list[torch.nn.Parameter], list[int], StepRecord] | None = None
        self.step = 0  # index of the next counted optimizer step
        self.dense_norms = False  # every step's gradient norms, not a sample (healing clips on them)
        # Losses backwarded since the last step, in order; those before index `counted_from` were
        # followed by a zero_grad(), so they are not part of the next step's gradient.
        self.pending_losses: list[torch.Tensor] = []
        self.pending_values: list[float | None] = []  # their values where read at backward() (CPU)
        self.counted_from = 0
        # (call, loss call, batch) when the first pending loss was backwarded: a script that
        # skips step() on a bad loss has already run the next forward by the step.
        self.first_pending_context: tuple[Any, Any, Any] | None = None
        self.last_step_time: float | None = None
        self.listeners: list[Callable[[], None]] = []  # called after each counted step

    def on_backward(self, tensors: Any) -> None:
        if isinstance(tensors, (list, tuple)) and len(tensors) == 1:
            tensors = tensors[0]
        if not isinstance(tensors, torch.Tensor) or tensors.numel() != 1:
            return
        loss = tensors.detach()
        self.roles.on_backward(tensors, loss)
        # On CPU reading the value costs nothing, so check now, while the last forward is still
        # the one that made this loss (a script may skip step() on a bad loss). On CUDA the
        # check waits for the step's single read-back, and the context of the first pending
        # loss (what its forward was given) is kept for it; a finite value read now needs none.
        value = None
        if read_now_of(loss):
            value = loss.item() if loss.dtype == torch.float32 else float(loss.float())
            if not math.isfinite(value) and not self.failures.nonfinite_loss_seen:
                self.failures.record_nonfinite_loss(value, self.step, self.loaders.epoch)
        if not self.pending_losses and (value is None or not math.isfinite(value)):
            self.first_pending_context = self.failures.context()  # references only, until the read-back
        self.pending_losses.append(loss)
        self.pending_values.append(value)

    def on_zero_grad(self) -> None:
        self.counted_from = len(self.pending_losses)
        self.timeline.habits.zero_grad_calls += 1

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.optimizers.watched(optimizer):
            return
        self.manual.stop()
        state = self.optimizers.state_for(optimizer)
        primary = self.optimizers.is_primary(optimizer, state)
        state.steps += 1
        new_optimizer = primary and self.optimizers.replaced
        if primary:
            self.optimizers.check_habits(state, self.step, self.loaders.epoch)
            self.memory.at_step(state.params)
        numbers, counted_from, context, found = self._read_back(state.params, state.layer_of)
        if primary:
            self.phases.at_step(self.step, new_optimizer, _trained(numbers, state.params, state.layer_of),
                                self.loaders.dataset_of_batch())
        if primary or not self.timeline.steps:
            self.loaders.count_epoch()
            record = StepRecord(step=self.step, epoch=self.loaders.epoch, lr=current_lr(optimizer))
            self.timeline.add_step(record)
            record.accuracy = found.get("accuracy")
            if not self.timeline.optimizer_hparams:
                self.timeline.optimizer_hparams = hparams(optimizer)
            if primary:
                self.sampling.before_update(state.params, self.step)
            counted = numbers.losses[counted_from:]
            if counted:
                # The objective whose gradient this step applies: with accumulation (each micro-batch
                # loss divided by the count) or several backward() calls, the sum of what was
                # backwarded since zero_grad().
                record.loss = sum(counted)
        record = self.timeline.steps[-1]
        if "terms" in found:
            record.terms = found["terms"]
        counted = numbers.losses[counted_from:]
        self.roles.at_step(optimizer, state.params, found["counted"], sum(counted) if counted else None, record)
        merge_grads(record, numbers, len(self.timeline.layers))
        self._check_nonfinite(record, numbers, state.params, context)

    def _read_back(self, params: list[torch.nn.Parameter],
                   layer_of: list[int]) -> tuple[StepNumbers, int, Any, dict[str, Any]]:
        """The step's one transfer: the losses backwarded since the last step, the gradient norms,
        and everything queued; returns the numbers, where the counted losses start, the context
        of the first loss, and what else was found: the step's training accuracy, the model's
        loss parts, the counted loss tensors."""
        if self.evaluation.tracker.pending:  # training resumed: the evaluation passes before it are complete
            self.evaluation.drain()
        losses, counted_from, context = self.pending_losses, self.counted_from, self.first_pending_context
        values = self.pending_values
        self.pending_losses, self.pending_values, self.counted_from, self.first_pending_context = [], [], 0, None
        found: dict[str, Any] = {"counted": losses[counted_from:]}
        self.sampling.queue_accuracy(found)
        self.parts.queue_terms(found)
        extras, decoders = self.queue.take()
        due = self.dense_norms or norms_due(self.step)
        read = None not in values and len(values) == len(losses)  # the losses were read at their backward (CPU)
        if not due and not extras and read:
            # Nothing to read. A tensor op right after a backward costs tens of microseconds, so
            # none is made.
            numbers = StepNumbers(values, math.nan, {}, [], [])
        else:  # where the losses were read at once, so can the norms be
            numbers = measure_step(params if due else [], layer_of, losses, extras, eager=read and bool(losses))
        if not due:
            numbers.measured = False
            # Rare: which gradients went bad (a sum that overflows costs one look for nothing).
            if not math.isfinite(sum(numbers.losses)):
                grads = measure_step(params, layer_of, [])
                numbers.total_norm, numbers.layer_norms = grads.total_norm, grads.layer_norms
                numbers.nonfinite_params, numbers.measured = grads.nonfinite_params, True
        if decoders:
            self.queue.apply(decoders, numbers.extras)
        self.loaders.batch_since_step = False
        return numbers, counted_from, context, found

    def _check_nonfinite(self, record: StepRecord, numbers: StepNumbers, params: list[torch.nn.Parameter],
                         context: Any) -> None:
        bad = next((i for i, v in enumerate(numbers.losses) if not math.isfinite(v)), None)
        if bad is not None and not self.failures.nonfinite_loss_seen:
            # The forward that made it: the first pending loss's, the latest, or (a micro-batch in
            # the middle of an accumulation) no longer held.
            last = len(numbers.losses) - 1
            where = context if bad == 0 else "current" if bad == last else None
            self.failures.record_nonfinite_loss(numbers.losses[bad], record.step, self.loaders.epoch, where)
        if numbers.nonfinite_params:
            names = [self.models.param_name(params[i]) for i in numbers.nonfinite_params]
            record.nonfinite_grads.extend(names)
            self.failures.note_nonfinite_grads(names, record.step, record.epoch, bad is not None)

    def after_backward(self) -> None:
        """A loop without an optimizer: a backward() followed by a hand-made update is a step."""
        if self.optimizers.states or self.optimizers.explicit is not None:
            return  # an optimizer counts the steps
        if self.timeline.steps and not self.manual.on:
            return
        was_on = self.manual.on
        if not self.manual.after_backward():
            return
        if not was_on and self.counted_from:
            # The backward() that revealed the loop ran after the first hand-made update: the losses
            # before that update's zero_grad() were step 0.
            cut = self.counted_from
            first, self.pending_losses = self.pending_losses[:cut], self.pending_losses[cut:]
            self.pending_values = self.pending_values[cut:]
            self.counted_from = 0
            values = measure_step([], [], first).losses
            record = StepRecord(step=self.step, epoch=self.loaders.epoch, loss=sum(values) if values else None)
            self.timeline.add_step(record)
            self._finish_step()
        self._manual_step()

    def _manual_step(self) -> None:
        if self.manual_last is not None:
            params, layer_of, record = self.manual_last
            self.sampling.after_update(params, layer_of, record)
        params = [p for _, p in self.models.trainable() if p.grad is not None]
        layer_of = [self.models.layer_of(p, f"param{i}") for i, p in enumerate(params)]
        numbers, counted_from, context, found = self._read_back(params, layer_of)
        self.loaders.count_epoch()
        record = StepRecord(step=self.step, epoch=self.loaders.epoch, accuracy=found.get("accuracy"),
                            terms=found.get("terms"))
        self.timeline.add_step(record)
        counted = numbers.losses[counted_from:]
        if counted:
            record.loss = sum(counted)
        merge_grads(record, numbers, len(self.timeline.layers))
        self._check_nonfinite(record, numbers, params, context)
        self.sampling.before_update(params, self.step)
        self.manual_last = (params, layer_of, record)
        self._finish_step()

    def _finish_step(self) -> None:
        self.memory.after_step(self.step, self.optimizers.alive())
        self.last_step_time = time.perf_counter()
        self.step += 1
        for listener in self.listeners:
            listener()

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.optimizers.is_counted(optimizer):
            return
        state = self.optimizers.states.get(id(optimizer))
        if state is not None and self.timeline.steps:
            self.sampling.after_update(state.params, state.layer_of, self.timeline.steps[-1])
        self._finish_step()


def _trained(numbers: StepNumbers, params: list[torch.nn.Parameter], layer_of: list[int]) -> frozenset[int]:
    """The layers whose gradients the step applies: those it measured, or (a step whose norms are
    not sampled) those with a gradient, which a frozen backbone's are not."""
    if numbers.measured:
        return frozenset(numbers.layer_norms)
    return frozenset([layer_of[i] for i, p in enumerate(params) if p.grad is not None])


def merge_grads(record: StepRecord, numbers: StepNumbers, num_layers: int) -> None:
    """Add a step's gradient norms into its record (a second optimizer in the same step adds its own)."""
    if not numbers.measured:
        return
    norms = record.layer_grad_norms or []
    norms = norms + [None] * (num_layers - len(norms))
    for index, value in numbers.layer_norms.items():
        old = norms[index]
        norms[index] = value if old is None else math.sqrt(old * old + value * value)
    record.layer_grad_norms = norms
    if math.isnan(numbers.total_norm) and not numbers.layer_norms:
        return
    old_total = record.grad_norm
    total = numbers.total_norm
    record.grad_norm = total if old_total is None else math.sqrt(old_total**2 + total**2)
