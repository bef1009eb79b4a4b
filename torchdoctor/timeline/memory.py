"""The memory picture of a run: samples of the process's memory, and the breakdown of a measured step."""

from __future__ import annotations

from dataclasses import dataclass, field


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
