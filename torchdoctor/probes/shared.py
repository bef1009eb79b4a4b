"""What the probes and the recorder share while a run is watched.

Probes run inside PyTorch's hooks and must decide in microseconds whether to look at all: they
ask this small object (is torchdoctor replaying a forward, is backward() running, is a forward
being measured), never the recorder's parts. The recorder's parts write it; the probes read it,
and write only the flags they own (`in_backward`, `stepping`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .memory import MemoryMeter


@dataclass
class Shared:
    replaying: bool = False  # torchdoctor re-runs a forward to find a NaN's origin: probes look away
    in_backward: int = 0  # >0 while torch.autograd.backward runs (set by the backward probe)
    stepping: list[int] = field(default_factory=list)  # optimizers whose step() is running (optimizer probe)
    # Where an exception left the run (phase, module, shapes...), noted by the first to see it.
    failed_in: dict[str, Any] | None = None
    in_model: bool = False  # a model's forward (a root that is not a loss) is running
    sampling_activations: Any = None  # the model (RootState) whose activations this forward samples
    meter: MemoryMeter = field(default_factory=MemoryMeter)  # its `capture` sees this forward's saved tensors
    loss_functions: dict[str, Any] = field(default_factory=dict)  # unwrapped F.* losses (set by the loss probe)
    # Where the script built each layer whose arguments a fix changes (Linear, Conv): module ->
    # {"file", "line", "end_line", "text"} (set by the source probe; weak keys).
    layer_sites: Any = None
    loader_sites: Any = None  # DataLoader -> where the script built it (the same, for its fixes)
    evaluation_site: Any = None  # () -> the evaluation block of the user's code around this forward
    call_site: Any = None  # () -> the user's statement that made the current call (the loss's)

    @property
    def measuring(self) -> bool:
        """This forward's layers are measured (memory breakdown or activation statistics)."""
        return self.meter.capture is not None or self.sampling_activations is not None


class Handlers(Protocol):
    """What the probes call: the recorder's `on_*` handlers (recorder/__init__.py). Probes know
    this shape only, so they depend on no recorder module."""

    shared: Shared

    def internal_error(self, message: str, exc: BaseException | None = None) -> None: ...
    def on_root_call(self, module: Any, args: tuple = ()) -> Any: ...
    def on_root_exit(self, module: Any, failed: bool) -> None: ...
    def on_root_done(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None: ...
    def on_module_failed(self, module: Any, args: tuple = ()) -> None: ...
    def on_activation(self, module: Any, output: Any) -> None: ...
    def on_loss(self, name: str, args: tuple, kwargs: dict, out: Any) -> None: ...
    def on_loss_failed(self, name: str, args: tuple) -> None: ...
    def on_backward(self, tensors: Any, retain_graph: bool = False, root: Any = None) -> None: ...
    def on_backward_failed(self) -> None: ...
    def on_after_backward(self) -> None: ...
    def on_scaler_update(self, before: Any, after: Any) -> None: ...
    def on_zero_grad(self) -> None: ...
    def on_before_step(self, optimizer: Any) -> None: ...
    def on_after_step(self, optimizer: Any) -> None: ...
    def on_loader_iter(self, loader: Any) -> int: ...
    def on_batch(self, owner: tuple[int, int] | None, batch: Any, wait_s: float = 0.0, cpu_s: float = 0.0) -> None: ...
    def settled_roots(self) -> list[Any] | None: ...
    def module_names_of(self, root: Any) -> dict[int, str] | None: ...
