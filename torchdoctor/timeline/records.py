"""What a timeline is made of: one record per step, evaluation pass, event, layer and model, and
what the run was (its command, machine, loss prior, phases) — plain Python values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..layers import NORMALIZATION_TYPES


@dataclass
class LayerInfo:
    """A module that owns parameters directly; gradients are summarised per layer."""

    name: str
    type: str
    params: list[str]
    numel: int
    kind: str  # "weight" (conv/linear-like), "norm", "embedding" or "other"
    model: str | None = None  # ModelInfo.label of the model it belongs to (a GAN's G and D apart)


@dataclass
class ModelInfo:
    """What a discovered model looks like, enough for rules to name modules and suggest fixes."""

    name: str
    module_types: dict[str, str]  # dotted path -> class name, in forward order where seen
    num_params: int
    trainable_params: int
    input_shape: list[int] | None = None  # of the first positional input of the first forward
    # What the script calls it (the variable it was called through: `netG`), unique in the run;
    # the class name when no name was found. Several models' series and roles go by it.
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    def modules_of_type(self, types: frozenset[str] | set[str]) -> list[str]:
        return [n for n, t in self.module_types.items() if t in types]

    @property
    def has_normalization(self) -> bool:
        return bool(self.modules_of_type(NORMALIZATION_TYPES))


@dataclass(slots=True)  # one per step: slots make it cheaper to build and to keep
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
    # The parts of the loss a model returned as a dict (a torchvision detector's loss_classifier,
    # loss_box_reg, ...), by name: the step's loss is their sum, each is its own series.
    terms: dict[str, float] | None = None
    # Each model's own loss at this step, by ModelInfo.label, when several models are trained by
    # their own optimizers (a GAN's discriminator and generator take turns within one step).
    model_losses: dict[str, float] | None = None


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
    iou: float | None = None  # mean IoU over the classes seen, for dense (segmentation) targets


@dataclass
class Event:
    """Something a probe saw once, with its measurements (e.g. where a NaN first appeared)."""

    kind: str
    step: int | None
    epoch: int | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AmpInfo:
    """What a GradScaler did: how often it skipped a step (Inf/NaN gradients) and its scale."""

    updates: int = 0
    skipped: int = 0
    skipped_steps: list[int] = field(default_factory=list)  # training steps done when it skipped
    scales: list[tuple[int, float]] = field(default_factory=list)  # (update index, scale after it)
    # clip_grad_norm_ calls while a GradScaler was in use (probes/clipping.py): all of them, those on
    # still-scaled gradients (no unscale_ first), and samples {"step", "scale", "norm", "max_norm"} of the latter
    clips: int = 0
    scaled_clips: int = 0
    clip_samples: list[dict[str, Any]] = field(default_factory=list)


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
    # How the run was cut short, if it was: "Ctrl-C" or "SIGTERM" (report.interruption); it then
    # stopped after its last recorded step, and is never called healthy.
    interrupted: str | None = None
    # What the run trains: "classification", "detection", "segmentation", "generation" or "other"
    # (Timeline.task decides it from what the probes saw; recorded here once decided).
    task: str | None = None


@dataclass
class LossPrior:
    """What the training loss is before any learning: a classification loss over C classes starts
    near ln(C) (a uniform prediction, whatever the label smoothing or class weights) and a model
    that stays there predicts no better than chance."""

    loss_fn: str
    classes: int | None = None  # the logits' class dimension
    label_smoothing: float = 0.0
    weighted: bool = False  # class weights given
    chance: float | None = None  # the loss of a uniform prediction: ln(C); ln(2) per element for BCE
    dense: bool = False  # one class index per pixel (N, C, H, W logits): segmentation
    ignore_index: int | None = None  # the target value the loss skips, when the script set one


@dataclass
class Phase:
    """A stretch of training judged on its own: it opens at `step` for `reason` (the run's start,
    a new optimizer, other parameters trained, another dataset, a learning-rate restart)."""

    step: int
    reason: str


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
    # Sampled training batches of a loss over class indices: {"step", "labels", "predicted",
    # "correct"}, each a list of counts per class (pixels for segmentation), ignore_index left out.
    classes: list[dict[str, Any]] = field(default_factory=list)
    # What the model's training forward was given as targets: "boxes" (a detector's list of dicts
    # with boxes), "masks", or None.
    targets: str | None = None
    # Optimizer steps whose model's forward (with gradients) ran in train() / in eval(), the first
    # of the latter and that model's label (recorder/invariants.py): model.train() not called again.
    train_mode_steps: int = 0
    eval_mode_steps: int = 0
    eval_mode_first_step: int | None = None
    eval_mode_model: str | None = None
    # Per optimizer, the steps that could change no parameter: {"optimizer", "index", "steps",
    # "no_update", "first_step", "why": {reason: count}}.
    no_update: list[dict[str, Any]] = field(default_factory=list)
    # Per LR scheduler whose step() the script called: {"scheduler", "optimizer", "steps",
    # "optimizer_steps", "before_optimizer", "first_step", "settings"}.
    schedulers: list[dict[str, Any]] = field(default_factory=list)
    # Validation inputs seen among the sampled training inputs (recorder/leakage.py): {"train_rows",
    # "train_distinct", "train_duplicates", "val_rows", "val_seen", "first_step"}; empty when not compared.
    leakage: dict[str, Any] = field(default_factory=dict)


@dataclass
class Roles:
    """Which model makes what another judges (a generator whose output a discriminator scores), seen
    from the data flowing between the models, and what each optimizer's step was given."""

    generator: str | None = None  # ModelInfo.label
    discriminator: str | None = None
    # (step, diversity) on sampled steps: the spread of the generator's outputs across the batch
    # over their spread overall; a collapsed generator gives every noise vector the same output.
    diversity: list[tuple[int, float]] = field(default_factory=list)
    # One per optimizer, in the order they first stepped: {"index", "optimizer" (class), "models"
    # (the models its parameters belong to), "reaches" (the models whose parameters the losses
    # backwarded before its step reach, on the steps checked), "steps"}.
    optimizers: list[dict[str, Any]] = field(default_factory=list)


MAX_HABIT_SAMPLES = 64  # sampled statistics kept of each kind
