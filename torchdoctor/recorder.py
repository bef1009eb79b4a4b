"""The recorder turns what the probes see into the timeline.

Probes call the `on_*` handlers from inside PyTorch's hooks. Every handler is
guarded: an error in torchdoctor is recorded as an internal warning and never
reaches the user's code.
"""

from __future__ import annotations

import functools
import math
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from .eval_passes import EvalTracker, class_counts, derivable, loss_terms
from .probes import tracing
from .probes.crash import classify, loss_facts, module_facts
from .probes.gradients import measure_step
from .probes.habits import (
    RELU_TYPES,
    SATURATING_TYPES,
    GradCarry,
    activation_stats,
    activations_due,
    decode_input,
    decode_loss_input,
    input_stats,
    loss_input_stats,
)
from .probes.localize import find_bad_input, nonfinite_kind, replay_forward
from .probes.memory import GraphTags, MemoryMeter, cuda_capacity, cuda_counters, machine_ram, out_of_memory
from .probes.updates import UpdateSampler, ratios
from .timeline import (
    EMBEDDING_TYPES,
    MAX_HABIT_SAMPLES,
    NORMALIZATION_TYPES,
    Event,
    LayerInfo,
    ModelInfo,
    StepRecord,
    Timeline,
)

F = TypeVar("F", bound=Callable[..., Any])

MAX_INTERNAL_ERRORS = 20
MAX_KEPT_OUTPUT = 1 << 20  # elements
MAX_AMP_RECORDS = 2000
# Devices where a loss is read when backward() is called (free there); elsewhere (CUDA) it waits
# for the step's single read-back, and the forward that made it is kept for the replay.
EAGER_LOSS_DEVICES = frozenset({"cpu"})
# Module discovery (global hooks on every module call) ends after this many steps; from then on
# only the roots found are hooked (probes/modules.py).
SETTLE_AFTER = 3
MAX_ACTIVATION_SAMPLES = 400
MAX_LOSS_MODULES = 16


def guarded(func: F) -> F:
    """Contain any exception from a handler: record it, return None, let the run go on."""

    @functools.wraps(func)
    def wrapper(self: Recorder, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except Exception as exc:
            self.internal_error(f"{func.__name__}: {type(exc).__name__}: {exc}", exc)
            return None

    return wrapper  # type: ignore[return-value]


def _is_loss_module(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.modules.loss._Loss)


def _layer_kind(module: torch.nn.Module) -> str:
    name = type(module).__name__
    if name in NORMALIZATION_TYPES:
        return "norm"
    if name in EMBEDDING_TYPES:
        return "embedding"
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        return "weight"
    return "other"


@dataclass
class RootState:
    """A discovered model: its names, and the forward order of its modules."""

    module: torch.nn.Module
    prefix: str
    module_names: dict[int, str]
    param_names: dict[int, str]
    forward_order: list[int] = field(default_factory=list)  # ids, first forward only
    order_done: bool = False
    info: ModelInfo | None = None


@dataclass
class OptimizerState:
    params: list[torch.nn.Parameter]
    layer_of: list[int]
    signature: tuple[int, ...]
    ref: Callable[[], Any] = lambda: None  # the optimizer, weakly: its id may be reused once it is gone
    steps: int = 0


class Recorder:
    def __init__(self, models: list[torch.nn.Module] | None = None,
                 optimizers: list[torch.optim.Optimizer] | None = None) -> None:
        self.timeline = Timeline()
        self.timeline.run.torch_version = torch.__version__
        self.explicit_models = {id(m) for m in models} if models else None
        self.explicit_optimizers = {id(o) for o in optimizers} if optimizers else None
        self.replaying = False
        self.in_backward = 0  # >0 while torch.autograd.backward runs (set by the backward probe)
        self.stepping: list[int] = []  # optimizers whose step() is running (optimizer probe)
        self.roots: dict[int, RootState] = {}
        self.param_layer: dict[int, int] = {}  # id(param) -> index in timeline.layers
        self.optimizers: dict[int, OptimizerState] = {}
        # The optimizer whose steps are counted. Weak, so that a script that builds a new optimizer
        # (a second fine-tuning phase) is not tied to the dead one.
        self.primary_ref: Callable[[], Any] | None = None
        self.step = 0  # index of the next primary optimizer step
        # Losses backwarded since the last step, in order; those before index `counted_from` were
        # followed by a zero_grad(), so they are not part of the next step's gradient.
        self.pending_losses: list[torch.Tensor] = []
        self.counted_from = 0
        # (last_call, last_loss_call, last_batch) when the first pending loss was backwarded: a
        # script that skips step() on a bad loss has already run the next forward by the step.
        self.first_pending_context: tuple[Any, Any, Any] | None = None
        self.last_call: tuple[torch.nn.Module, tuple, dict] | None = None
        self.last_output: torch.Tensor | None = None
        self.last_loss_call: tuple[tuple, Any] | None = None
        self.loss_modules: dict[int, torch.nn.Module] = {}  # loss modules called as roots, to keep watching
        self.last_batch: Any = None
        self.iterations: dict[int, int] = {}  # id(loader) -> passes started over it
        self.loader_refs: dict[int, weakref.ref] = {}  # id(loader) -> the loader, weakly
        self.train_loader: int | None = None
        self.last_batch_loader: int | None = None
        self.last_batch_pass: tuple[int, int] | None = None  # (id(loader), pass) of the last batch
        self.step_pass: tuple[int, int] | None = None  # the training pass of the last step
        self.epochs_seen = 0
        self.batch_since_step = False  # a batch was fetched after the last step: evaluation reads it
        self.loader_names: dict[int, str] = {}  # id(loader) -> "loader 2", in order of first use
        self.evals = EvalTracker()
        self.loss_functions: dict[str, Any] = {}  # unwrapped F.* losses (set by the loss probe)
        self.pending_accuracy: list[tuple[torch.Tensor, torch.Tensor]] = []  # (correct, counted) this step
        self.updates = UpdateSampler()
        self.pending_update: tuple[StepRecord, torch.Tensor] | None = None
        self.pending_scales: list[tuple[int, torch.Tensor]] = []  # GradScaler (step, [before, after]) on its device
        # Sampled statistics on the device, read with the next step's read-back: (decode, tensor).
        self.pending_reads: list[tuple[Callable[[list[float]], None], torch.Tensor]] = []
        self.grad_carry = GradCarry()
        self.loader_waits: dict[int, list] = {}  # loader id -> [batches, seconds waited]
        self.loader_settings: dict[int, dict[str, Any]] = {}
        self.first_batch_time: float | None = None
        self.last_step_time: float | None = None
        self.inputs_sampled: set[int] = set()
        self.eval_mode_noted = False  # the last forward's evaluation loss was counted
        self.activations_sampled: set[int] = set()
        self.sampling_activations: RootState | None = None  # the model whose activations this forward samples
        self.unoptimized_checked = False
        self.memory = MemoryMeter()
        self.graph_tags = GraphTags()
        self.step_listeners: list[Callable[[], None]] = []  # called after each counted step
        self.failed_in: dict[str, Any] | None = None  # phase, module, ...: where an exception left
        self.nonfinite_loss_seen = False
        self.nonfinite_grad_seen = False
        self._error_counts: dict[str, int] = {}
        for m in models or []:
            self._discover(m)

    # -- bookkeeping ---------------------------------------------------------
    def internal_error(self, message: str, exc: BaseException | None = None) -> None:
        count = self._error_counts.get(message, 0)
        self._error_counts[message] = count + 1
        if count == 0 and len(self.timeline.internal_errors) < MAX_INTERNAL_ERRORS:
            where = ""
            if exc is not None and exc.__traceback__ is not None:
                last = traceback.extract_tb(exc.__traceback__)[-1]
                where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
            self.timeline.internal_errors.append(message + where)

    @property
    def epoch(self) -> int | None:
        """The current epoch, counting passes over the training loader in which the optimizer
        stepped: a `next(iter(loader))` to look at a batch, or a validation loader, is none. A
        new training pass whose first step is still to come already counts."""
        if self.train_loader is None:
            return None
        count = self.epochs_seen
        current = self.last_batch_pass
        if current is not None and current[0] == self.train_loader and current != self.step_pass:
            count += 1
        return count - 1 if count else None

    @property
    def loader_iters(self) -> dict[int, int]:
        """Epochs per loader (what the session reports as run.epochs): the training loader only."""
        return {self.train_loader: self.epochs_seen} if self.train_loader is not None else {}

    def name_of(self, module: torch.nn.Module) -> str:
        for state in self.roots.values():
            name = state.module_names.get(id(module))
            if name is not None:
                return name
        return type(module).__name__

    def _owner_of(self, module: torch.nn.Module) -> RootState | None:
        for state in self.roots.values():
            if id(module) in state.module_names:
                return state
        return None

    def _discover(self, module: torch.nn.Module) -> RootState:
        inner = _compiled_original(module)
        if inner is not None:  # torch.compile(model): name the layers as the model names them
            self._note_compiled(inner)
        named = inner if inner is not None else module
        prefix = "" if not self.roots else f"{type(named).__name__}:"
        names = {id(m): (prefix + n if n else type(named).__name__) for n, m in named.named_modules()}
        names[id(module)] = names[id(named)]
        params = {id(p): prefix + n for n, p in named.named_parameters()}
        state = RootState(module, prefix, names, params)
        self.roots[id(module)] = state
        if self.timeline.run.device == "cpu":
            first = next(module.parameters(), None)
            if first is not None:
                self.timeline.run.device = str(first.device)
        return state

    def _note_compiled(self, inner: torch.nn.Module) -> None:
        if not self.timeline.events_of("compiled"):
            self.timeline.events.append(Event("compiled", self.step, None, {
                "model": type(inner).__name__,
                "not_observed": "inside compiled code: the forward order of its layers and the activation "
                                "memory per module (gradients, losses, NaN origins and memory totals are)",
            }))

    def _finish_model(self, state: RootState, args: tuple = ()) -> None:
        """Once the first forward has shown the order, record the model and its layers."""
        module = state.module
        seen: dict[int, int] = {id(module): -1}  # the root is entered first (its own params: a cls token)
        for k, i in enumerate(state.forward_order):
            seen.setdefault(i, k)  # a module called twice (a shared ReLU) sits where it was first called
        named = list(module.named_modules())
        ordered = sorted(named, key=lambda nm: seen.get(id(nm[1]), len(seen)))
        types = {state.module_names[id(m)]: type(m).__name__ for _, m in ordered}
        params = list(module.parameters())
        state.info = ModelInfo(
            name=type(module).__name__,
            module_types=types,
            num_params=sum(p.numel() for p in params),
            trainable_params=sum(p.numel() for p in params if p.requires_grad),
            input_shape=list(args[0].shape) if args and isinstance(args[0], torch.Tensor) else None,
        )
        self.timeline.models.append(state.info)
        for _, sub in ordered:
            own = [(n, p) for n, p in sub.named_parameters(recurse=False)]
            if not own:
                continue
            index = len(self.timeline.layers)
            self.timeline.layers.append(
                LayerInfo(
                    name=state.module_names[id(sub)],
                    type=type(sub).__name__,
                    params=[state.param_names.get(id(p), n) for n, p in own],
                    numel=sum(p.numel() for _, p in own),
                    kind=_layer_kind(sub),
                )
            )
            for _, p in own:
                self.param_layer.setdefault(id(p), index)
        state.order_done = True

    # -- module forward ------------------------------------------------------
    def settled_roots(self) -> list[torch.nn.Module] | None:
        """The roots to keep watching once discovery is over, or None while it is not: the first
        SETTLE_AFTER steps have run, every model has shown its layer order, and no forward is
        being measured."""
        if self.step < SETTLE_AFTER or not self.roots or self.memory.capture is not None:
            return None
        if not all(state.order_done for state in self.roots.values()):
            return None
        return [state.module for state in self.roots.values()] + list(self.loss_modules.values())

    @guarded
    def on_root_call(self, module: torch.nn.Module, args: tuple = ()) -> RootState | None:
        """A module called while no other runs: a loss, or a model (discovered on first sight)."""
        if _is_loss_module(module):
            if len(self.loss_modules) < MAX_LOSS_MODULES:
                self.loss_modules.setdefault(id(module), module)
            return None
        self.failed_in = None
        state = self._root_state(module)
        if state is not None and _training_forward(module):
            if self.memory.profile_due(self.step):
                self._begin_memory_profile(state, module, args)
            if args and self.updates.due(self.step) and self.step not in self.inputs_sampled:
                self._sample_input(args[0])
            if activations_due(self.step) and self.step not in self.activations_sampled:
                self.activations_sampled.add(self.step)
                self.sampling_activations = state
        return state

    @guarded
    def on_activation(self, module: torch.nn.Module, output: Any) -> None:
        """A ReLU/Sigmoid/Tanh module's output on a sampled training forward."""
        kind = type(module).__name__
        state = self.sampling_activations
        if state is None or (kind not in RELU_TYPES and kind not in SATURATING_TYPES):
            return
        found = self.timeline.habits.activations
        if len(found) >= MAX_ACTIVATION_SAMPLES:
            del found[: MAX_ACTIVATION_SAMPLES // 2]
        stats = activation_stats(kind, output)
        if stats is None:
            return
        step, name = self.step, state.module_names.get(id(module), kind)
        units = output.shape[1]
        if kind in RELU_TYPES:
            def decode(v: list[float]) -> None:
                found.append({"step": step, "module": name, "type": kind, "dead": int(v[0]), "units": units})
        else:
            def decode(v: list[float]) -> None:
                found.append({"step": step, "module": name, "type": kind, "saturated": v[0]})
        self.pending_reads.append((decode, stats))

    def _sample_input(self, x: Any) -> None:
        """The model's input on sampled steps: raw 0-255 pixels and unscaled features show here."""
        self.inputs_sampled.add(self.step)
        if len(self.timeline.habits.inputs) >= MAX_HABIT_SAMPLES:
            return
        stats = input_stats(x)
        if stats is None:
            return
        step, shape = self.step, list(x.shape)
        self.pending_reads.append((lambda v: self.timeline.habits.inputs.append(decode_input(step, shape, v)),
                                   stats))

    def _root_state(self, module: torch.nn.Module) -> RootState | None:
        key = id(module)
        state = self.roots.get(key)
        if state is None:
            if self.explicit_models is not None and key not in self.explicit_models:
                return None
            if next(module.parameters(), None) is None:
                return None
            owner = self._owner_of(module)
            if owner is not None:  # a submodule of a known model, called on its own
                state = RootState(module, owner.prefix, owner.module_names, owner.param_names, order_done=True)
                self.roots[key] = state
            else:
                state = self._discover(module)
        return state

    def _begin_memory_profile(self, state: RootState, module: torch.nn.Module, args: tuple) -> None:
        if _compiled_original(module) is not None:  # torch.compile'd: saved tensors are its own
            return
        if self.memory.device is None:
            first = next(module.parameters(), None)
            self.memory.device = first.device if first is not None else None
        self.memory.begin(self.step, module, args, state.module_names, state.module_names[id(module)],
                          list(module.parameters()))

    @guarded
    def on_root_exit(self, module: torch.nn.Module, failed: bool) -> None:
        """A root forward returned or raised: stop seeing saved tensors; note where an exception left."""
        self.sampling_activations = None
        if self.memory.capture is not None:
            self.memory.end_forward()
        if failed and self.failed_in is None:
            self.failed_in = {"phase": "forward", "module": None}

    @guarded
    def on_scaler_update(self, before: torch.Tensor | float, after: torch.Tensor | float) -> None:
        """GradScaler.update(): a scale that went down means this step's gradients held Inf/NaN
        and the scaler skipped optimizer.step() (by design while it calibrates). The scales are
        copies on the scaler's device; on CPU they are read now, elsewhere with the next step's
        read-back."""
        pair = [torch.as_tensor(v, dtype=torch.float32).reshape(1) for v in (before, after)]
        device = pair[1].device if isinstance(after, torch.Tensor) else pair[0].device
        scales = torch.cat([v.to(device) for v in pair])
        step = self.step
        if device.type in EAGER_LOSS_DEVICES:
            self._apply_scales(step, scales.tolist())
        else:
            self.pending_scales.append((step, scales))

    def _apply_scales(self, step: int, values: list[float]) -> None:
        before, after = values
        amp = self.timeline.amp
        amp.updates += 1
        if after < before:
            amp.skipped += 1
            amp.skipped_steps.append(step)
            del amp.skipped_steps[:-MAX_AMP_RECORDS]
        amp.scales.append((amp.updates - 1, after))
        del amp.scales[:-MAX_AMP_RECORDS]

    @guarded
    def on_backward_failed(self) -> None:
        self.failed_in = {"phase": "backward", "module": None}

    @guarded
    def on_loss_failed(self, name: str, args: tuple) -> None:
        """A loss function raised: note it with the shapes it was given (and what they broadcast to)."""
        shapes = [list(a.shape) for a in args[:2] if isinstance(a, torch.Tensor)]
        info: dict[str, Any] = {"phase": "loss", "module": None, "loss": name, "shapes": shapes, **loss_facts(args)}
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            try:
                info["broadcast_shape"] = list(torch.broadcast_shapes(*[torch.Size(x) for x in shapes]))
            except RuntimeError:
                pass
        self.failed_in = info

    @guarded
    def on_module_failed(self, module: torch.nn.Module, args: tuple = ()) -> None:
        """A module's forward raised; the first to say so is where it happened."""
        if self.failed_in is None:
            self.failed_in = {"phase": "forward", "module": self.name_of(module), **module_facts(module, args)}

    @guarded
    def on_root_done(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if _is_loss_module(module):
            # Keep only the target and the value: holding the logits would keep a large tensor alive.
            value = output.detach() if isinstance(output, torch.Tensor) and output.numel() == 1 else None
            self.last_loss_call = (args[1:], value)
            return
        state = self.roots.get(id(module))
        if state is None:
            return
        if not state.order_done:
            self._finish_model(state, args)
        self.last_call = (module, args, kwargs)
        self.eval_mode_noted = False
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled() or not module.training:
            self._on_eval_forward(output)
        # Small outputs only: finalize() checks it, and a big one (LM logits) must not outlive its step.
        small = isinstance(output, torch.Tensor) and output.numel() <= MAX_KEPT_OUTPUT
        self.last_output = output.detach() if small else None

    # -- losses and evaluation ---------------------------------------------------
    def _eval_context(self) -> tuple[int | None, int, int | None]:
        """(loader, step, epoch) an evaluation loss belongs to: the loader of a batch fetched since
        the last step (None: tensors fed directly), the steps done, the last step's epoch."""
        loader = self.last_batch_loader if self.batch_since_step else None
        epoch = self.timeline.steps[-1].epoch if self.timeline.steps else None
        return loader, self.step, epoch

    @guarded
    def on_loss(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        """A loss function ran. With gradients on and the model training, it is a training loss
        (its accuracy is counted); otherwise it belongs to an evaluation pass."""
        if not isinstance(out, torch.Tensor):
            return
        # The loss module's own hook says the same while discovering; after that, a loss module
        # made afresh at each step is seen only here.
        self.last_loss_call = (args[1:], None)
        model = self.last_call[0] if self.last_call is not None else None
        if out.requires_grad and (model is None or model.training):
            self.evals.close()  # training resumed: an evaluation pass before it is complete
            if self.timeline.train_loss_fn is None:
                self.timeline.train_loss_fn = name
            # Training accuracy is a curve for the reports, no rule's input: sampled like the update
            # ratio, it costs a dozen small ops on one step in ten instead of on every step.
            due = self.updates.due(self.step)
            counts = class_counts(name, args, kwargs) if due else None
            if counts is not None:
                self.pending_accuracy.append(counts)
            if due and len(self.timeline.habits.loss_inputs) < MAX_HABIT_SAMPLES:
                stats = loss_input_stats(name, args)
                if stats is not None:
                    step = self.step
                    self.pending_reads.append(
                        (lambda v: self.timeline.habits.loss_inputs.append(decode_loss_input(step, name, v)), stats))
            return
        self._note_eval_mode(model)
        terms = loss_terms(name, args, kwargs, out)
        if terms is not None:
            self.evals.add_loss(*self._eval_context(), name, terms, tentative=out.requires_grad)

    def _on_eval_forward(self, output: Any) -> None:
        """A forward in evaluation mode. If the script computes no loss on it (validation written
        by hand), the training loss is applied to the output and the batch's target, when the
        batch is an (input, target) pair that fits it."""
        self.timeline.eval_forwards += 1
        name = self.timeline.train_loss_fn
        batch = self.last_batch if self.batch_since_step else None
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return  # eval() with gradients on is also how some fine-tune: only a loss call tells
        if name is None or not isinstance(batch, (list, tuple)) or len(batch) != 2:
            return
        target = batch[1]
        if not isinstance(target, torch.Tensor) or not isinstance(output, torch.Tensor):
            return
        target = target.to(output.device, non_blocking=True)
        function = self.loss_functions.get(name)
        if function is None or not derivable(name, output, target):
            return
        with torch.no_grad():
            value = function(output.detach(), target)
        terms = loss_terms(name, (output, target), {}, value)
        if terms is not None:
            self._note_eval_mode(self.last_call[0] if self.last_call is not None else None)
            self.evals.add_derived(*self._eval_context(), name, terms)

    def _note_eval_mode(self, model: torch.nn.Module | None) -> None:
        """An evaluation loss: was the model left in train() (dropout on, batch statistics used)?"""
        if model is None or not model.training or (torch.is_grad_enabled() and not torch.is_inference_mode_enabled()):
            return
        if self.eval_mode_noted:  # the loss derived for this forward and the script's own loss on it
            return
        self.eval_mode_noted = True
        habits = self.timeline.habits
        habits.eval_in_train_mode += 1
        if habits.eval_in_train_mode_step is None:
            habits.eval_in_train_mode_step = self.step
            state = self.roots.get(id(model))
            habits.eval_model = state.module_names.get(id(model)) if state is not None else type(model).__name__

    def _drain_evaluations(self) -> None:
        self.evals.close()
        self.timeline.evaluations.extend(self.evals.drain(self.loader_names, self.train_loader))

    # -- backward --------------------------------------------------------------
    @guarded
    def on_backward(self, tensors: Any, retain_graph: bool = False, root: Any = None) -> None:
        self.timeline.backward_calls += 1
        self.failed_in = None
        if retain_graph:
            self.timeline.memory.retain_graph_calls += 1
        if isinstance(root, (list, tuple)) and len(root) == 1:
            root = root[0]
        if isinstance(root, torch.Tensor) and root.grad_fn is not None:
            loss = tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
            self.graph_tags.tag(self.step, root, scaled=loss is not root)
        self.evals.on_backward()
        self.stepping.clear()  # no step() is running now: a step that raised left nothing behind
        if isinstance(tensors, (list, tuple)) and len(tensors) == 1:
            tensors = tensors[0]
        if isinstance(tensors, torch.Tensor) and tensors.numel() == 1:
            loss = tensors.detach()
            if not self.pending_losses:  # references only; kept until the step's read-back
                self.first_pending_context = (self.last_call, self.last_loss_call, self.last_batch)
            self.pending_losses.append(loss)
            # On CPU reading the value costs nothing, so check now, while the last forward is still
            # the one that made this loss (a script may skip step() on a bad loss). On CUDA the
            # check waits for the step's single read-back (first_pending_context covers the skip).
            if loss.device.type in EAGER_LOSS_DEVICES and not self.nonfinite_loss_seen:
                value = loss.item() if loss.dtype == torch.float32 else float(loss.float())
                if not math.isfinite(value):
                    self._record_nonfinite_loss(value, self.step)

    # -- data loading ----------------------------------------------------------
    @guarded
    def on_loader_iter(self, loader: Any) -> int:
        """A new pass over `loader` begins; returns its ordinal, which tags the pass's batches."""
        count = self.iterations.get(id(loader), 0) + 1
        self.iterations[id(loader)] = count
        if id(loader) not in self.loader_names:
            self.loader_names[id(loader)] = f"loader {len(self.loader_names) + 1}"
            self.loader_settings[id(loader)] = {
                "num_workers": getattr(loader, "num_workers", None), "pin_memory": getattr(loader, "pin_memory", None),
                "batch_size": getattr(loader, "batch_size", None),
                "dataset": type(getattr(loader, "dataset", None)).__name__}
        self.evals.restart(id(loader))
        ref = self.loader_refs.get(id(loader))
        if ref is None or ref() is not loader:  # new, or a dead loader's id reused
            try:
                self.loader_refs[id(loader)] = weakref.ref(loader)
            except TypeError:
                pass
        return count

    @guarded
    def on_batch(self, owner: tuple[int, int] | None, batch: Any, wait_s: float = 0.0) -> None:
        if owner is not None:
            stats = self.loader_waits.setdefault(owner[0], [0, 0.0])
            stats[0] += 1
            stats[1] += wait_s
            if self.first_batch_time is None:
                self.first_batch_time = time.perf_counter() - wait_s
        self.last_batch = batch
        self.batch_since_step = True
        self.last_batch_pass = owner
        self.last_batch_loader = owner[0] if owner else None

    def _count_epoch(self) -> None:
        """At a counted step: a new pass over the training loader is a new epoch.

        The training loader is the one the batch before the first step came from. A batch from
        another loader that is still alive (a second, zipped loader) says nothing; if the training
        loader is gone, the script builds a new loader per epoch and this one takes its place.
        """
        current = self.last_batch_pass
        if current is None:
            return
        if self.train_loader is None:
            self.train_loader = current[0]
        elif current[0] != self.train_loader:
            ref = self.loader_refs.get(self.train_loader)
            if ref is None or ref() is not None:
                return
            self.train_loader = current[0]
        if current != self.step_pass:
            self.step_pass = current
            self.epochs_seen += 1

    @guarded
    def on_zero_grad(self) -> None:
        self.counted_from = len(self.pending_losses)
        self.timeline.habits.zero_grad_calls += 1

    # -- optimizer -------------------------------------------------------------
    def _optimizer_state(self, optimizer: torch.optim.Optimizer) -> OptimizerState:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        signature = tuple(id(p) for p in params)
        state = self.optimizers.get(id(optimizer))
        if state is not None and state.ref() is not optimizer:  # a dead optimizer's id, reused
            del self.optimizers[id(optimizer)]
            state = None
        if state is not None and state.signature == signature:
            return state
        layer_of = []
        for i, p in enumerate(params):
            index = self.param_layer.get(id(p))
            if index is None:
                index = len(self.timeline.layers)
                name = f"optimizer{len(self.optimizers)}.param{i}"
                self.timeline.layers.append(LayerInfo(name, "Parameter", [name], p.numel(), "other"))
                self.param_layer[id(p)] = index
            layer_of.append(index)
        state = OptimizerState(params, layer_of, signature, _weak(optimizer))
        if id(optimizer) not in self.optimizers:
            self.timeline.optimizers.append(type(optimizer).__name__)
        self.optimizers[id(optimizer)] = state
        return state

    def _check_habits(self, state: OptimizerState) -> None:
        """Before the counted optimizer's step: were the gradients reset since the last one, and
        (once, when every optimizer has stepped) does each trainable parameter have one?"""
        habits = self.timeline.habits
        carried = self.grad_carry.check(state.params, habits.zero_grad_calls, self.timeline.backward_calls)
        if carried is not None:
            habits.steps_checked += 1
            habits.grads_carried += int(carried)
        if not self.unoptimized_checked and self.step >= SETTLE_AFTER - 1 and self.explicit_optimizers is None:
            self.unoptimized_checked = True
            self._check_unoptimized()

    def _check_unoptimized(self) -> None:
        """Parameters that require and receive gradients but that no optimizer updates (or only
        with a learning rate of 0): the optimizer was given a part of the model."""
        optimized: set[int] = set()
        zero_lr: set[int] = set()
        for st in self.optimizers.values():
            optimizer = st.ref()
            if optimizer is None:
                continue
            for group in optimizer.param_groups:
                lr = group.get("lr")
                for p in group["params"]:
                    optimized.add(id(p))
                    if isinstance(lr, (int, float)) and lr == 0:
                        zero_lr.add(id(p))
        seen: set[int] = set()
        idle: list[str] = []
        at_zero_lr: list[str] = []
        idle_numel = trainable = 0
        for root in self.roots.values():
            for p in root.module.parameters():
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                trainable += p.numel()
                if p.grad is not None and (id(p) not in optimized or id(p) in zero_lr):
                    idle.append(root.param_names.get(id(p), "?"))
                    idle_numel += p.numel()
                    if id(p) in zero_lr:
                        at_zero_lr.append(idle[-1])
        if idle:
            self.timeline.events.append(Event("unoptimized_parameters", self.step, self.epoch, {
                "params": idle, "numel": idle_numel, "trainable_numel": trainable,
                "zero_lr": at_zero_lr,
                "optimizers": len(self.optimizers),
            }))

    def _is_primary(self, optimizer: torch.optim.Optimizer, state: OptimizerState) -> bool:
        """Steps are counted on one optimizer: the first that steps (a GAN's second optimizer
        adds its gradients to the same step). A new optimizer takes its place when the old one is
        gone, or when it optimizes some of the same parameters: the script replaced it (a second
        fine-tuning phase over the unfrozen model), it did not add a companion."""
        current = self.primary_ref() if self.primary_ref is not None else None
        if current is optimizer:
            return True
        if current is not None:
            old = self.optimizers.get(id(current))
            if old is None or state.steps or not {id(p) for p in old.params} & set(state.signature):
                return False
        self.primary_ref = _weak(optimizer)
        return True

    def _param_name(self, param: torch.nn.Parameter) -> str:
        for state in self.roots.values():
            name = state.param_names.get(id(param))
            if name is not None:
                return name
        return self.timeline.layers[self.param_layer[id(param)]].name

    @guarded
    def on_before_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.explicit_optimizers is not None and id(optimizer) not in self.explicit_optimizers:
            return
        state = self._optimizer_state(optimizer)
        primary = self._is_primary(optimizer, state)
        state.steps += 1
        if primary:
            self._check_habits(state)
        if self.evals.pending:  # training resumed: the evaluation passes before it are complete
            self._drain_evaluations()
        losses, counted_from, context = self.pending_losses, self.counted_from, self.first_pending_context
        self.pending_losses, self.counted_from, self.first_pending_context = [], 0, None
        if primary and self.memory.pending is not None:
            self.memory.at_step(state.params)
        extras, counts_accuracy, update = self._step_extras()
        numbers = measure_step(state.params, state.layer_of, losses, extras)
        accuracy = self._apply_extras(numbers.extras, counts_accuracy, update)
        self.batch_since_step = False
        if primary or not self.timeline.steps:
            self._count_epoch()
            record = StepRecord(step=self.step, epoch=self.epoch, lr=_lr(optimizer))
            self.timeline.add_step(record)
            record.accuracy = accuracy
            if not self.timeline.optimizer_hparams:
                self.timeline.optimizer_hparams = _hparams(optimizer)
            if primary and self.updates.due(self.step):
                self.updates.capture(state.params)
            counted = numbers.losses[counted_from:]
            if counted:
                # The objective whose gradient this step applies: with accumulation (each micro-batch
                # loss divided by the count) or several backward() calls, the sum of what was
                # backwarded since zero_grad().
                record.loss = sum(counted)
        record = self.timeline.steps[-1]
        _merge_grads(record, numbers, len(self.timeline.layers))
        bad = next((i for i, v in enumerate(numbers.losses) if not math.isfinite(v)), None)
        bad_loss = [numbers.losses[bad]] if bad is not None else []
        if bad is not None and not self.nonfinite_loss_seen:
            # The forward that made it: the first pending loss's, the latest, or (a micro-batch in
            # the middle of an accumulation) no longer held.
            last = len(numbers.losses) - 1
            where = context if bad == 0 else "current" if bad == last else None
            self._record_nonfinite_loss(bad_loss[0], record.step, where)
        if numbers.nonfinite_params:
            names = [self._param_name(state.params[i]) for i in numbers.nonfinite_params]
            record.nonfinite_grads.extend(names)
            if not bad_loss and not self.nonfinite_grad_seen and not self.nonfinite_loss_seen:
                self.nonfinite_grad_seen = True
                self.timeline.events.append(
                    Event("nonfinite_gradient", record.step, record.epoch, {"params": names})
                )

    @guarded
    def on_after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.primary_ref is not None and self.primary_ref() is optimizer:
            if self.updates.before is not None and self.timeline.steps:
                state = self.optimizers.get(id(optimizer))
                measured = state and self.updates.measure(state.params, state.layer_of, len(self.timeline.layers))
                if measured is not None:
                    self.pending_update = (self.timeline.steps[-1], measured)
            self._after_step_memory()
            self.last_step_time = time.perf_counter()
            self.step += 1
            for listener in self.step_listeners:
                listener()

    def _after_step_memory(self) -> None:
        meter = self.memory
        if meter.pending is not None:
            meter.after_step(s.ref() for s in list(self.optimizers.values()) if s.ref() is not None)
        if meter.sample_due(self.step):
            meter.sample(self.step)
            graphs, tensors = self.graph_tags.kept(self.step)
            self.timeline.memory.note_kept(self.step, graphs, tensors)

    def _step_extras(self) -> tuple[list[torch.Tensor], bool, StepRecord | None]:
        """Numbers kept on the device that ride along with the step's read-back: this step's
        training accuracy counts, and the update ratio sampled at the previous step."""
        extras: list[torch.Tensor] = []
        counts_accuracy = bool(self.pending_accuracy)
        if counts_accuracy:
            correct = torch.stack([c.reshape(()) for c, _ in self.pending_accuracy]).sum()
            counted = torch.stack([n.reshape(()) for _, n in self.pending_accuracy]).sum()
            extras.append(torch.stack([correct, counted]).float())
            self.pending_accuracy = []
        update = None
        if self.pending_update is not None:
            update, tensor = self.pending_update
            extras.append(tensor)
            self.pending_update = None
        extras += [scales for _, scales in self.pending_scales]
        extras += [tensor for _, tensor in self.pending_reads]
        return extras, counts_accuracy, update

    def _apply_extras(self, values: list[list[float]], counts_accuracy: bool,
                      update: StepRecord | None) -> float | None:
        """Fill in the sampled update ratio; return the step's training accuracy."""
        values = list(values)
        accuracy = None
        if counts_accuracy and values:
            correct, counted = values.pop(0)
            accuracy = correct / counted if counted else None
        if update is not None and values:
            update.update_ratio, update.layer_update_ratios = ratios(values.pop(0), len(self.timeline.layers))
        steps = [step for step, _ in self.pending_scales]
        self.pending_scales = []
        for step, scales in zip(steps, values, strict=False):
            self._apply_scales(step, scales)
        values = values[len(steps):]
        reads, self.pending_reads = self.pending_reads, []
        for (decode, _), read in zip(reads, values, strict=False):
            decode(read)
        return accuracy

    # -- localization ----------------------------------------------------------
    def _record_nonfinite_loss(self, value: float, step: int, context: Any = "current") -> None:
        """`context`: "current", or (last_call, last_loss_call, last_batch) as they were when the
        bad loss was backwarded, or None when they are no longer held."""
        self.nonfinite_loss_seen = True
        data: dict[str, Any] = {"value": value}
        if context is None:
            data.update(origin=None, detail="the loss of a micro-batch in the middle of a gradient "
                        "accumulation went non-finite; its batch is no longer held, so it was not replayed")
        else:
            data.update(self._locate(None if context == "current" else context))
        self.timeline.events.append(Event("nonfinite_loss", step, self.epoch, data))

    def _locate(self, context: tuple[Any, Any, Any] | None = None) -> dict[str, Any]:
        last_call, last_loss_call, last_batch = context or (self.last_call, self.last_loss_call, self.last_batch)
        if last_call is None:
            return {"origin": None, "detail": "no model forward was observed"}
        module, args, kwargs = last_call
        batch: list[tuple[str, Any]] = [("model input", args[:1] if args else ())]
        batch.append(("model input (other arguments)", (args[1:], kwargs)))
        if last_loss_call is not None:
            batch.append(("loss target", last_loss_call[0]))
        if last_batch is not None:
            batch.append(("data loader batch", last_batch))
        bad = find_bad_input(batch)
        if bad is not None:
            return {"origin": "input", "detail": f"the {bad['tensor']} held NaN/Inf", "input": bad}
        self.replaying = True
        try:
            found = replay_forward(module, args, kwargs, self.name_of)
        except Exception as exc:
            return {"origin": None, "detail": f"could not replay the forward: {type(exc).__name__}: {exc}"}
        finally:
            self.replaying = False
        if "origin" not in found:
            found.update(origin="loss", detail="the model's output was finite; the loss computation made it non-finite")
        found["module_type"] = self.timeline.module_type(found["origin"]) if found["origin"] else None
        return found

    @guarded
    def finalize(self) -> None:
        """Read back what is still on the device (the last evaluation pass, the last sampled update),
        and catch a non-finite loss the script saw but never stepped on (e.g. it stopped on NaN)."""
        self._finish_measurements()
        self._finish_memory()
        self._catch_unstepped_nonfinite_loss()

    @guarded
    def _finish_memory(self) -> None:
        meter, info = self.memory, self.timeline.memory
        if meter.capture is not None:
            meter.end_forward()
        # A step that did not finish (the run died in it) still tells what it held so far.
        info.profile = meter.profile or meter.pending
        info.samples = meter.samples
        device = meter.device
        info.device = str(device) if device is not None else self.timeline.run.device
        counters = cuda_counters(device)
        if counters is not None:
            info.peak_allocated = counters["peak_allocated"]
            info.peak_reserved = counters["peak_reserved"]
            info.capacity = cuda_capacity(device)
        else:
            info.capacity = machine_ram()

    @guarded
    def on_script_failed(self, exc: BaseException) -> None:
        """The run died: of out-of-memory (where, and what was being allocated), or of another
        error, explained where it is a classic one."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return
        where = self.failed_in or {"phase": "optimizer step" if self.stepping else "code outside the model",
                                   "module": None}
        oom = out_of_memory(exc)
        if oom is not None:
            oom.update(where)
            self.timeline.events.append(Event("out_of_memory", self.step, self.epoch, oom))
            return
        self.timeline.events.append(Event("script_error", self.step, self.epoch, classify(exc, where)))

    @guarded
    def _finish_measurements(self) -> None:
        self._drain_evaluations()
        self._finish_loaders()
        if self.pending_update is not None:
            record, tensor = self.pending_update
            self.pending_update = None
            record.update_ratio, record.layer_update_ratios = ratios(tensor.tolist(), len(self.timeline.layers))
        pending, self.pending_scales = self.pending_scales, []
        for step, scales in pending:
            self._apply_scales(step, scales.tolist())
        reads, self.pending_reads = self.pending_reads, []
        for decode, tensor in reads:
            decode(tensor.tolist())

    def _finish_loaders(self) -> None:
        habits = self.timeline.habits
        for key, (batches, wait) in self.loader_waits.items():
            name = self.loader_names.get(key)
            if name is not None:
                habits.loaders[name] = {"batches": batches, "wait_s": wait, **self.loader_settings.get(key, {})}
        habits.train_loader = self.loader_names.get(self.train_loader) if self.train_loader is not None else None
        if self.first_batch_time is not None and self.last_step_time is not None:
            habits.train_time_s = max(0.0, self.last_step_time - self.first_batch_time)

    def _catch_unstepped_nonfinite_loss(self) -> None:
        if self.nonfinite_loss_seen:
            return
        candidates: list[tuple[torch.Tensor, Any]] = [(t, "current") for t in self.pending_losses]
        if len(candidates) > 1 and self.first_pending_context is not None:
            candidates[0] = (candidates[0][0], self.first_pending_context)
        if self.last_loss_call is not None and self.last_loss_call[1] is not None:
            candidates.append((self.last_loss_call[1], "current"))
        for t, context in candidates:
            kind = nonfinite_kind(t)
            if kind is not None:
                self._record_nonfinite_loss(float(t.float().reshape(-1)[0]), self.step, context)
                return
        if self.last_output is not None and nonfinite_kind(self.last_output) in ("nan", "inf"):
            self._record_nonfinite_loss(math.nan, self.step)
        self.pending_losses = []

    def close(self) -> None:
        """Drop references to the user's tensors and modules."""
        self.last_call = self.last_output = self.last_batch = self.last_loss_call = None
        self.pending_losses = []
        self.first_pending_context = None
        self.roots.clear()
        self.optimizers.clear()
        self.memory.release()
        self.graph_tags.tags.clear()


def _compiled_original(module: torch.nn.Module) -> torch.nn.Module | None:
    """The model inside a torch.compile wrapper (OptimizedModule), if `module` is one."""
    inner = getattr(module, "_orig_mod", None)
    return inner if type(module).__name__ == "OptimizedModule" and isinstance(inner, torch.nn.Module) else None


def _training_forward(module: torch.nn.Module) -> bool:
    return (module.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
            and not tracing())


def _weak(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:  # no weak references to it: hold it
        return lambda: obj


IMPLEMENTATION_OPTIONS = frozenset({"foreach", "fused", "differentiable", "capturable", "maximize"})


def _hparams(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The first param group's scalar settings (lr, weight_decay, momentum, betas, ...)."""
    out: dict[str, Any] = {}
    try:
        for key, value in optimizer.param_groups[0].items():
            if key in IMPLEMENTATION_OPTIONS:
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or value is None:
                out[key] = value
            elif isinstance(value, (int, float)):
                out[key] = float(value)
            elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value):
                out[key] = [float(v) for v in value]
    except Exception:
        pass
    return out


def _lr(optimizer: torch.optim.Optimizer) -> float | None:
    try:
        lr = optimizer.param_groups[0].get("lr")
        return float(lr) if lr is not None else None
    except Exception:
        return None


def _merge_grads(record: StepRecord, numbers: Any, num_layers: int) -> None:
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
