"""The recorder turns what the probes see into the timeline.

Probes call the `on_*` handlers from inside PyTorch's hooks; each handler hands the event to the
part that owns that concern (models, loaders, optimizers, steps, evaluation, sampling, failures,
memory). Every handler is guarded: an error in torchdoctor is recorded as an internal warning and
never reaches the user's code. What the probes need to read while deciding whether to look at
all lives in `probes.shared.Shared`, not here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from ..probes.habits import loss_prior
from ..probes.process import machine_ram
from ..probes.shared import Shared
from ..timeline import Timeline
from .amp import AmpWatch
from .evaluation import Evaluation
from .failures import Failures
from .guard import InternalErrors, guarded
from .invariants import Invariants
from .leakage import Leakage
from .loaders import Loaders
from .memory import MemoryWatch
from .models import Models, RootState, compiled_original, is_loss_module, training_forward
from .optimizers import Optimizers
from .ranksync import RankSync
from .readback import ReadbackQueue
from .roles import Roles
from .sampling import Sampling
from .state import Latest
from .steps import Steps
from .terms import LossParts, targets_kind
from .workers import merge_workers

__all__ = ["Recorder", "RootState", "Shared"]

MAX_KEPT_OUTPUT = 1 << 20  # elements
TARGETS_STEPS = 5  # the first steps, in which what a model's forward is given as targets is looked at


class Recorder:
    def __init__(self, models: list[torch.nn.Module] | None = None,
                 optimizers: list[torch.optim.Optimizer] | None = None) -> None:
        self.timeline = Timeline()
        run = self.timeline.run
        run.torch_version = torch.__version__
        run.cpu_count = os.cpu_count()
        run.ram_bytes = machine_ram()
        self.shared = Shared()
        self.errors = InternalErrors(self.timeline.internal_errors)
        self.latest = Latest()
        self.queue = ReadbackQueue()
        self.models = Models(self.timeline, models)
        self.loaders = Loaders()
        self.optimizers = Optimizers(self.timeline, self.models, optimizers)
        self.evaluation = Evaluation(self.timeline, self.models, self.loaders, self.shared)
        self.sampling = Sampling(self.timeline, self.shared, self.queue)
        self.failures = Failures(self.timeline, self.shared, self.latest, self.models, self.loaders)
        self.memory = MemoryWatch(self.timeline, self.shared)
        self.amp = AmpWatch(self.timeline, self.queue)
        self.parts = LossParts(self.timeline, self.queue)
        self.roles = Roles(self.timeline, self.models, self.queue)
        self.leakage = Leakage(self.timeline, self.queue)
        self.invariants = Invariants(self.timeline, self.optimizers.params_of)
        self.ranksync = RankSync(self.timeline, self.models, self.queue)
        self.worker_timelines: list[dict[str, Any]] = []  # handed back by forked workers (Hogwild)
        self.inner_losses = 0  # training losses computed inside a model's forward, this forward
        # The root forward running: (module, its RootState or None, a training forward), as
        # on_root_call found them, for on_root_done.
        self.forward: tuple[torch.nn.Module, RootState | None, bool] | None = None
        self.loader_sites: dict[int, dict[str, Any]] = {}  # id(loader) -> where the script built it
        self.steps = Steps(self.timeline, self.models, self.loaders, self.optimizers, self.evaluation,
                           self.sampling, self.failures, self.memory, self.queue, self.parts, self.roles)
        self.steps.listeners.append(self._fingerprint_step)

    # -- what the session and the renderers read ---------------------------------------------
    def internal_error(self, message: str, exc: BaseException | None = None) -> None:
        self.errors.note(message, exc)

    @property
    def step(self) -> int:
        return self.steps.step

    @property
    def epoch(self) -> int | None:
        return self.loaders.epoch

    def on_step(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each counted step (the live progress display)."""
        self.steps.listeners.append(listener)

    def memory_samples(self) -> list[Any]:
        return self.shared.meter.samples

    def settled_roots(self) -> list[torch.nn.Module] | None:
        return self.models.settled_roots(self.step, self.shared.meter.capture is not None)

    def module_names_of(self, root: torch.nn.Module) -> dict[int, str] | None:
        return self.models.names_of(root)

    # -- module forward (module probe) ------------------------------------------------------
    @guarded
    def on_root_call(self, module: torch.nn.Module, args: tuple = ()) -> RootState | None:
        """A module called while no other runs: a loss, or a model (discovered on first sight)."""
        self.forward = None
        if is_loss_module(module):
            self.models.note_loss_module(module)
            self.forward = (module, None, False)
            return None
        self.shared.failed_in = None
        state = self.models.root_state(module, self.step)
        self.shared.in_model = state is not None
        self.inner_losses = 0
        training = state is not None and training_forward(module)
        self.forward = (module, state, training)
        if training:
            self.memory.on_training_forward(state, module, args, self.step)
            self.sampling.on_training_forward(state, args, self.step, compiled_original(module) is not None)
            self.roles.on_training_input(state.label, args, self.step)
            self.leakage.on_training_input(module, args, self.step, self.sampling.due(self.step))
            self.ranksync.on_training_forward(module, self.step)
            if self.step < TARGETS_STEPS:  # before the forward: a crash in it still knows the task
                self.on_training_call(module, args, {})
        return state

    @guarded
    def on_training_call(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """What a model's training forward is given as targets (a detector's boxes)."""
        habits = self.timeline.habits
        if habits.targets is None:
            habits.targets = targets_kind(args, kwargs)

    @guarded
    def on_activation(self, module: torch.nn.Module, output: Any) -> None:
        self.sampling.on_activation(module, output, self.step)

    @guarded
    def on_root_exit(self, module: torch.nn.Module, failed: bool) -> None:
        """A root forward returned or raised: stop seeing saved tensors; note where an exception left."""
        self.shared.sampling_activations = None
        self.shared.in_model = False
        self.sampling.end_forward()
        self.memory.on_forward_exit()
        if failed and self.shared.failed_in is None:
            self.shared.failed_in = {"phase": "forward", "module": None}

    @guarded
    def on_root_done(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        forward, self.forward = self.forward, None
        if forward is not None and forward[0] is module:  # what on_root_call found: not looked up twice
            state, training = forward[1], forward[2]
        else:
            state = self.models.roots.get(id(module))  # a loss module is never a root
            training = state is not None and training_forward(module)
        if state is None:
            if is_loss_module(module):
                # Keep only the target and the value: holding the logits would keep a large tensor alive.
                value = output.detach() if isinstance(output, torch.Tensor) and output.numel() == 1 else None
                self.latest.loss_call = (args[1:], value)
            return
        if not state.order_done:
            self.models.finish(state, args)
            self._note_output_layer(state)
        self.latest.call = (module, args, kwargs)
        self.invariants.on_forward(module, state)
        self.evaluation.mode_noted = False
        if training:  # a training forward is never an evaluation (grad on, train mode)
            if self.step < TARGETS_STEPS:
                self.on_training_call(module, args, kwargs)
            if self.parts.on_training_output(output, state.info.module_types if state.info else {}):
                self._model_computed_loss()
            self.roles.on_training_output(state.label, output, self.step, self.sampling.due(self.step))
        elif not torch.is_grad_enabled() or torch.is_inference_mode_enabled() or not module.training:
            self.evaluation.on_forward(output, module, self.step)
            loader = self.loaders.batch_loader  # an evaluation over the training loader is no validation
            if not torch.is_grad_enabled() and (loader is None or loader != self.loaders.train_loader):
                self.leakage.on_eval_input(module, args, self.step)
        # Small outputs only: finalize() checks it, and a big one (LM logits) must not outlive its step.
        small = isinstance(output, torch.Tensor) and output.numel() <= MAX_KEPT_OUTPUT
        self.latest.output = output.detach() if small else None

    @guarded
    def on_module_failed(self, module: torch.nn.Module, args: tuple = ()) -> None:
        self.failures.on_module_failed(module, args)

    # -- losses (loss probe) ------------------------------------------------------------------
    @guarded
    def on_loss(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        """A loss function ran. With gradients on and the model training, it is a training loss
        (its accuracy is counted); otherwise it belongs to an evaluation pass."""
        if not isinstance(out, torch.Tensor):
            return
        # The loss module's own hook says the same while discovering; after that, a loss module
        # made afresh at each step is seen only here.
        self.latest.loss_call = (args[1:], None)
        model = self.latest.model
        if out.requires_grad and (model is None or model.training):
            self.evaluation.tracker.close()  # training resumed: an evaluation pass before it is complete
            if self.shared.in_model:
                self.inner_losses += 1
                if self.parts.model_computes_loss:
                    return  # a part of the loss the model returns (a detector's): not the training loss
            if self.timeline.train_loss_fn is None:
                self.timeline.train_loss_fn = name
                self.timeline.prior = loss_prior(name, args, kwargs)
                site = self.shared.call_site() if self.shared.call_site is not None else None
                if site is not None:
                    self.timeline.sources["loss"] = site  # the loss call a fix to its input rewrites
            self.sampling.on_training_loss(name, args, kwargs, self.step)
            return
        self.evaluation.on_loss(name, args, kwargs, out, model, self.step)

    def _note_output_layer(self, state: Any) -> None:
        """Where the script built the first model's last module when that is a Softmax or a Sigmoid:
        the line double_softmax / double_sigmoid rewrite."""
        info, sites = state.info, self.shared.layer_sites
        if info is None or not info.module_types or sites is None or "output_layer" in self.timeline.sources:
            return
        name, kind = list(info.module_types.items())[-1]
        if kind not in ("Softmax", "Sigmoid"):
            return
        layer = next((m for m in state.module.modules() if state.module_names.get(id(m)) == name), None)
        site = sites.get(layer) if layer is not None else None
        if site is not None:
            self.timeline.sources["output_layer"] = {**site, "module": name, "type": kind}

    def _model_computed_loss(self) -> None:
        """A model returned its losses as a dict: the loss calls inside its forward were its parts;
        the first forward's already set the training loss (and its chance level): take it back."""
        if self.inner_losses and self.timeline.loss_terms:
            self.timeline.train_loss_fn = None
            self.timeline.prior = None
            self.sampling.pending_accuracy = []  # of the detector's proposals, not of the model
        self.inner_losses = 0

    @guarded
    def on_loss_failed(self, name: str, args: tuple) -> None:
        self.failures.on_loss_failed(name, args)

    # -- backward and optimizer (backward and optimizer probes) ---------------------------------
    @guarded
    def on_backward(self, tensors: Any, retain_graph: bool = False, root: Any = None) -> None:
        self.timeline.backward_calls += 1
        self.shared.failed_in = None
        self.memory.on_backward(tensors, retain_graph, root, self.step)
        self.evaluation.tracker.on_backward()
        self.invariants.on_backward()
        self.shared.stepping.clear()  # no step() is running now: a step that raised left nothing behind
        self.steps.on_backward(tensors)

    @guarded
    def on_after_backward(self) -> None:
        self.steps.after_backward()

    @guarded
    def on_backward_failed(self) -> None:
        self.failures.on_backward_failed()

    @guarded
    def on_scaler_update(self, before: torch.Tensor | float, after: torch.Tensor | float) -> None:
        self.amp.on_update(before, after, self.step)

    @guarded
    def on_clip(self, scale: torch.Tensor | None, norm: Any, max_norm: Any) -> None:
        self.amp.on_clip(scale, norm, max_norm, self.step)

    @guarded
    def on_zero_grad(self) -> None:
        self.steps.on_zero_grad()
        self.invariants.on_zero_grad()

    @guarded
    def on_before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.steps.before_step(optimizer)
        self.invariants.before_step(optimizer, self.step, self.optimizers.is_counted(optimizer))

    @guarded
    def on_after_step(self, optimizer: torch.optim.Optimizer) -> None:
        step = self.step
        self.steps.after_step(optimizer)
        self.invariants.after_step(step)

    @guarded
    def on_scheduler_step(self, scheduler: Any) -> None:
        self.invariants.on_scheduler_step(scheduler, self.step)

    @guarded
    def on_ddp_wrap(self, ddp: Any) -> None:
        """A DistributedDataParallel was built (DDP probe): remember which model it wraps."""
        self.ranksync.on_ddp_wrap(ddp)

    @guarded
    def on_worker_start(self) -> int:
        """In a forked worker, before its target: the steps the parent had recorded."""
        return len(self.timeline.steps)

    @guarded
    def on_worker_exit(self, mark: int | None) -> Timeline | None:
        """In a forked worker, after its target: its timeline (its own steps), or None if it trained nothing."""
        if len(self.timeline.steps) <= (mark or 0):
            return None  # a DataLoader worker, or one that trained nothing: no finalize (no device reads)
        self.finalize()
        self.timeline.steps = self.timeline.steps[mark or 0:]
        return self.timeline

    @guarded
    def on_worker_timelines(self, handed: list[dict[str, Any]]) -> None:
        """In the parent: the timelines its workers handed back (merged at finalize)."""
        self.worker_timelines.extend(handed)

    @guarded
    def _fingerprint_step(self) -> None:
        self.ranksync.after_step(self.steps.step - 1)

    # -- data loading (data probe) ---------------------------------------------------------------
    @guarded
    def on_loader_iter(self, loader: Any) -> int:
        count = self.loaders.start_pass(loader)
        sites = self.shared.loader_sites
        if sites is not None and len(self.loader_sites) < 64 and id(loader) not in self.loader_sites:
            site = sites.get(loader)
            if site is not None:
                self.loader_sites[id(loader)] = site
        self.evaluation.tracker.restart(id(loader))
        return count

    @guarded
    def on_batch(self, owner: tuple[int, int] | None, batch: Any, wait_s: float = 0.0, cpu_s: float = 0.0) -> None:
        self.loaders.on_batch(owner, batch, wait_s, cpu_s)

    # -- the end ------------------------------------------------------------------------------
    @guarded
    def on_script_failed(self, exc: BaseException) -> None:
        self.failures.on_script_failed(exc, self.step, self.epoch)

    @guarded
    def finalize(self) -> None:
        """Read back what is still on the device (the last evaluation pass, the last sampled update),
        and catch a non-finite loss the script saw but never stepped on (e.g. it stopped on NaN)."""
        self._finish_measurements()
        self._finish_memory()
        self.roles.finish()
        self.invariants.finish()
        self.leakage.finish()
        self.ranksync.finish()
        steps = self.steps
        self.failures.catch_unstepped(steps.pending_losses, steps.first_pending_context, self.step, self.epoch)
        steps.pending_losses, steps.pending_values = [], []
        if self.loaders.train_loader is not None:
            self.timeline.run.epochs = self.loaders.epochs_seen
        if self.worker_timelines:
            handed, self.worker_timelines = self.worker_timelines, []
            self._merge_workers(handed)

    @guarded
    def _merge_workers(self, handed: list[dict[str, Any]]) -> None:
        merge_workers(self.timeline, handed)

    @guarded
    def _finish_measurements(self) -> None:
        self.evaluation.drain()
        self.loaders.write(self.timeline.habits, self.steps.last_step_time)
        site = self.loader_sites.get(self.loaders.train_loader)  # where its num_workers fix goes
        if site is not None:
            self.timeline.sources["train_loader"] = site
        self.queue.finish()

    @guarded
    def _finish_memory(self) -> None:
        self.memory.finish()

    def close(self) -> None:
        """Drop references to the user's tensors and modules."""
        self.sampling.end_forward()  # a forward interrupted (Ctrl-C) left its mode on
        self.latest.clear()
        self.loaders.last_batch = None
        self.steps.pending_losses, self.steps.pending_values = [], []
        self.steps.first_pending_context = None
        self.models.clear()
        self.optimizers.clear()
        self.parts.clear()
        self.roles.clear()
        self.leakage.clear()
        self.invariants.clear()
        self.memory.release()
        self.queue.clear()

