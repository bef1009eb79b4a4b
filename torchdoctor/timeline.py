"""The record of a run: what the probes saw, step by step, in plain Python values.

Rules read only this, never torch, so a rule can be tested on a hand-made timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .layers import NORMALIZATION_TYPES

MAX_STEPS = 20_000  # step records kept; beyond it the older history is thinned
RECENT_STEPS = 5_000  # the most recent steps are always kept at full resolution
EARLY_STEPS = 1_000  # and so are the first ones


@dataclass
class LayerInfo:
    """A module that owns parameters directly; gradients are summarised per layer."""

    name: str
    type: str
    params: list[str]
    numel: int
    kind: str  # "weight" (conv/linear-like), "norm", "embedding" or "other"


@dataclass
class ModelInfo:
    """What a discovered model looks like, enough for rules to name modules and suggest fixes."""

    name: str
    module_types: dict[str, str]  # dotted path -> class name, in forward order where seen
    num_params: int
    trainable_params: int
    input_shape: list[int] | None = None  # of the first positional input of the first forward

    def modules_of_type(self, types: frozenset[str] | set[str]) -> list[str]:
        return [n for n, t in self.module_types.items() if t in types]

    @property
    def has_normalization(self) -> bool:
        return bool(self.modules_of_type(NORMALIZATION_TYPES))


@dataclass
class StepRecord:
    """One optimizer step. Norms are L2; `None` means not measured at this step."""

    step: int
    epoch: int | None = None
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    layer_grad_norms: list[float | None] | None = None  # aligned with Timeline.layers
    nonfinite_grads: list[str] = field(default_factory=list)
    accuracy: float | None = None  # of the step's batch, for classification losses (logits + class indices)
    # ||w_after - w_before|| / ||w_before|| over the optimizer's parameters, measured on sampled steps only;
    # 0.0 means the step changed no weight at all.
    update_ratio: float | None = None
    layer_update_ratios: list[float | None] | None = None  # aligned with Timeline.layers


@dataclass
class EvalPass:
    """One evaluation pass: the losses computed in evaluation mode (under no_grad/inference_mode or
    with the model in eval()) between two training steps, over one data loader."""

    step: int  # training steps done before it
    epoch: int | None
    loss: float | None  # mean per sample
    accuracy: float | None = None  # classification only
    samples: int = 0
    batches: int = 0
    loader: str | None = None  # which loader ("loader 2"), None for tensors fed directly
    source: str = "loss"  # "loss": a loss call was seen; "derived": the training loss applied to output and target
    loss_fn: str | None = None  # e.g. "cross_entropy"


@dataclass
class Event:
    """Something a probe saw once, with its measurements (e.g. where a NaN first appeared)."""

    kind: str
    step: int | None
    epoch: int | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class MemorySample:
    """The process's memory after a step: RSS on every device, the CUDA allocator's counters there."""

    step: int
    rss: int | None
    heap: int | None = None  # CPU memory malloc has handed out (glibc), exact where RSS is noisy
    allocated: int | None = None
    reserved: int | None = None


@dataclass
class ModuleMemory:
    """One module's share of a training step: bytes of its own parameters and of the tensors it
    saved for backward (ops in a parent's own forward count for the parent)."""

    name: str
    type: str
    parameters: int = 0
    gradients: int = 0
    activations: int = 0
    input_bytes: int = 0  # what checkpointing it would keep that nothing else does: its input, if unsaved


@dataclass
class MemoryProfile:
    """The breakdown of one measured training step, in bytes."""

    step: int
    root: str = ""  # the model's own name in `modules` (ops in its forward count for it)
    batch_size: int | None = None
    parameters: int = 0
    gradients: int = 0
    gradients_in_forward: int = 0  # gradients still alive while the forward ran (not set to None)
    optimizer_state: int = 0
    activations: int = 0  # saved for backward, parameters and the input batch excluded
    batch: int = 0  # the input batch, when autograd saved it
    activation_dtypes: dict[str, int] = field(default_factory=dict)
    modules: list[ModuleMemory] = field(default_factory=list)  # in forward order
    # (module, bytes, other modules that saved the same storage) of each saved storage, in forward order
    saves: list[tuple[str, int, list[str]]] = field(default_factory=list)

    @property
    def step_total(self) -> int:
        """What the step holds at its peak, bounded above: everything at once."""
        return self.parameters + self.gradients + self.optimizer_state + self.activations + self.batch

    def top_level(self) -> list[ModuleMemory]:
        """The model's direct children with what their subtrees hold (`layer3.1.conv2` counts for
        `layer3`), in forward order; the model's own entry (ops in its forward) stays as it is."""
        out: dict[str, ModuleMemory] = {}
        for m in self.modules:
            parts = m.name.split(".")
            row = out.setdefault(parts[0], ModuleMemory(name=parts[0], type=""))
            if len(parts) == 1:
                row.type, row.input_bytes = m.type, m.input_bytes
            row.parameters += m.parameters
            row.gradients += m.gradients
            row.activations += m.activations
        return [r for r in out.values() if r.parameters or r.activations]

    @property
    def per_sample(self) -> float | None:
        """Bytes that grow with each sample of the batch."""
        if not self.batch_size:
            return None
        return (self.activations + self.batch) / self.batch_size


@dataclass
class MemoryInfo:
    """The memory picture of the run."""

    device: str = "cpu"
    capacity: int | None = None  # the device's memory (CUDA), or the machine's RAM
    budget: int | None = None  # --memory-budget: what the user asks to fit in
    samples: list[MemorySample] = field(default_factory=list)
    profile: MemoryProfile | None = None
    peak_rss: int | None = None
    peak_allocated: int | None = None  # CUDA, over the whole run
    peak_reserved: int | None = None
    retain_graph_calls: int = 0  # backward(retain_graph=True) calls
    # The most earlier steps' graphs (and loss tensors) found alive at once, two or more steps after
    # their step, and the first step at which any was.
    graphs_kept: int = 0
    losses_kept: int = 0
    kept_since: int | None = None

    def note_kept(self, step: int, graphs: list[int], tensors: list[int]) -> None:
        if graphs and self.kept_since is None:
            self.kept_since = graphs[0]
        self.graphs_kept = max(self.graphs_kept, len(graphs))
        self.losses_kept = max(self.losses_kept, len(tensors))


@dataclass
class AmpInfo:
    """What a GradScaler did: how often it skipped a step (Inf/NaN gradients) and its scale."""

    updates: int = 0
    skipped: int = 0
    skipped_steps: list[int] = field(default_factory=list)  # training steps done when it skipped
    scales: list[tuple[int, float]] = field(default_factory=list)  # (update index, scale after it)


@dataclass
class RunInfo:
    argv: list[str] = field(default_factory=list)
    exit_status: int | None = None
    duration_s: float | None = None
    torch_version: str = ""
    device: str = "cpu"
    world_size: int = 1
    epochs: int | None = None
    script_exception: str | None = None
    # The machine the run ran on, recorded so rules stay pure functions of the timeline (a report
    # judged elsewhere must not size DataLoader workers by the reviewer's cores).
    cpu_count: int | None = None
    ram_bytes: int | None = None


@dataclass
class Habits:
    """What the everyday-bug probes saw: counts kept as the run goes, a few sampled statistics."""

    zero_grad_calls: int = 0  # optimizer.zero_grad() / module.zero_grad() calls
    steps_checked: int = 0  # steps whose gradients were compared with the step before
    grads_carried: int = 0  # of them: the same gradient tensors, neither reset nor zeroed
    eval_in_train_mode: int = 0  # evaluation losses computed while the model was in train()
    eval_in_train_mode_step: int | None = None
    eval_model: str | None = None  # the model those evaluations ran
    # Sampled statistics of the model's input, and of what the loss was given:
    # {"step", "min", "max", "mean", "std", "channel_mean", "channel_std", "shape"}
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # {"step", "loss", "min", "max", "row_sum_error"} (cross_entropy) or {"step", "loss", "max", "lse_error"} (nll)
    loss_inputs: list[dict[str, Any]] = field(default_factory=list)
    # Sampled activation statistics per module: {"step", "module", "type", "dead", "units"} (ReLU) or
    # {"step", "module", "type", "saturated"} (Sigmoid/Tanh)
    activations: list[dict[str, Any]] = field(default_factory=list)
    # Per DataLoader (by name): {"batches", "wait_s", "num_workers", "pin_memory", "batch_size", "dataset"}
    loaders: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_loader: str | None = None
    train_time_s: float | None = None  # from the first training batch to the last optimizer step


MAX_HABIT_SAMPLES = 64


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

    @property
    def last_lr(self) -> float | None:
        for rec in reversed(self.steps):
            if rec.lr is not None:
                return rec.lr
        return None
