"""What a training step holds in memory, and how the process's memory moves from step to step.

Two measurements, both cheap enough to leave on:

- A timeline of the process: RSS (psutil) on every device, and on CUDA the caching
  allocator's counters, which are host-side numbers (no synchronization). RSS costs ~30 us
  to read, so it is sampled: every step at first, then every `every`-th.
- The breakdown of one training step (parameters, gradients, optimizer state, and the
  activations autograd saved for backward, per module), taken on a few sampled steps.
  Activations are seen through `torch.autograd.graph.saved_tensors_hooks` pushed for one
  training forward: the pack hook returns the tensor detached (the same storage: autograd
  keeps exactly what it would have kept) and notes its storage once, attributed to the
  innermost module running.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch

from ..timeline import MemoryProfile, MemorySample, ModuleMemory
from .process import heap_in_use, process_rss

FIRST_STEPS = 20  # sampled every step
EVERY = 10  # then every this many steps
MAX_SAMPLES = 2000  # beyond this the series is thinned and the stride doubled
PROFILE_STEPS = (0, 50)  # training forwards whose saved activations are measured, then every 500th
PROFILE_EVERY = 500


def storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    """(data pointer, bytes) of the storage behind a tensor; None where there is no real storage."""
    try:
        if t.device.type == "meta" or t.is_sparse or t.is_nested:
            return None
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except Exception:  # functorch/fake/subclass tensors without a plain storage
        return None


def total_bytes(tensors: Iterable[Any], exclude: set[int] | None = None) -> int:
    """Bytes of the distinct storages among `tensors` (views and repeats counted once)."""
    seen: set[int] = set(exclude or ())
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        key = storage_key(t)
        if key is None or key[0] in seen or key[0] == 0:
            continue
        seen.add(key[0])
        total += key[1]
    return total


def optimizer_state_tensors(optimizer: Any) -> Iterable[torch.Tensor]:
    try:
        for state in optimizer.state.values():
            if isinstance(state, dict):
                for value in state.values():
                    if isinstance(value, torch.Tensor) and value.numel() > 1:
                        yield value
    except Exception:
        return


def cuda_counters(device: torch.device | None) -> dict[str, int] | None:
    """The caching allocator's counters for `device`; None when CUDA was never used (asking
    would create a context on the user's GPU)."""
    if device is None or device.type != "cuda" or not torch.cuda.is_initialized():
        return None
    try:
        return {
            "allocated": int(torch.cuda.memory_allocated(device)),
            "reserved": int(torch.cuda.memory_reserved(device)),
            "peak_allocated": int(torch.cuda.max_memory_allocated(device)),
            "peak_reserved": int(torch.cuda.max_memory_reserved(device)),
        }
    except Exception:
        return None


def cuda_capacity(device: torch.device | None) -> int | None:
    if device is None or device.type != "cuda" or not torch.cuda.is_initialized():
        return None
    try:
        return int(torch.cuda.mem_get_info(device)[1])
    except Exception:
        return None


class ActivationCapture:
    """Saved-for-backward storages of one forward, attributed to the module that saved them."""

    def __init__(self, exclude: set[int], names: dict[int, str], root_name: str) -> None:
        self.exclude = exclude  # storages that are parameters (counted as such)
        self.names = names
        self.stack: list[str] = [root_name]
        self.saved: dict[str, int] = {}  # module name -> bytes
        self.inputs: dict[str, tuple[int, int]] = {}  # module name -> storage of its first input
        # (module, bytes, other modules that saved it too) of each saved storage, in order
        self.sequence: list[tuple[str, int, list[str]]] = []
        self.index: dict[int, int] = {}  # storage -> its position in sequence
        self.order: list[str] = [root_name]
        self.dtypes: dict[str, int] = {}  # dtype -> bytes
        self.batch_ptr: int | None = None
        self.batch_bytes = 0
        self.context: Any = None

    def start(self, batch: Any) -> bool:
        key = storage_key(batch) if isinstance(batch, torch.Tensor) else None
        if key is not None:
            self.batch_ptr, self.batch_bytes = key
        try:
            self.context = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
            self.context.__enter__()
        except Exception:  # disable_saved_tensors_hooks is in force: measure nothing
            self.context = None
            return False
        return True

    def stop(self) -> None:
        if self.context is not None:
            context, self.context = self.context, None
            context.__exit__(None, None, None)

    def enter(self, module: torch.nn.Module, args: tuple) -> None:
        name = self.names.get(id(module), type(module).__name__)
        self.stack.append(name)
        if name not in self.inputs:
            self.order.append(name)
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            key = storage_key(first) if first is not None else None
            self.inputs[name] = key if key is not None else (0, 0)

    def kept_by_checkpoint(self, name: str) -> int:
        """Bytes a checkpoint of `name` would keep that nothing else keeps: its input, unless that
        is the batch or a tensor a module outside it saved anyway."""
        ptr, size = self.inputs.get(name, (0, 0))
        if not ptr or ptr == self.batch_ptr:
            return 0
        owner = self.owner(ptr)
        if owner is not None and owner != name and not owner.startswith(name + "."):
            return 0
        return size

    def owner(self, ptr: int) -> str | None:
        """The module that first saved the storage at `ptr`, if one did."""
        position = self.index.get(ptr)
        return self.sequence[position][0] if position is not None else None

    def exit(self) -> None:
        if len(self.stack) > 1:
            self.stack.pop()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            key = storage_key(t)
            if key is not None and key[0] in self.index:  # saved again, maybe by another module
                entry = self.sequence[self.index[key[0]]]
                if self.stack[-1] != entry[0] and self.stack[-1] not in entry[2]:
                    entry[2].append(self.stack[-1])
            elif key is not None and key[0] and key[0] not in self.exclude and key[0] != self.batch_ptr:
                owner = self.stack[-1]
                self.saved[owner] = self.saved.get(owner, 0) + key[1]
                self.index[key[0]] = len(self.sequence)
                self.sequence.append((owner, key[1], []))
                dtype = str(t.dtype).replace("torch.", "")
                self.dtypes[dtype] = self.dtypes.get(dtype, 0) + key[1]
        except Exception:
            pass
        # Detached: the same storage and version counter, so autograd keeps exactly what it would
        # have; returning `t` itself would tie an op's saved output to its own grad_fn in a cycle
        # the garbage collector cannot see, and a forward never backwarded would never be freed.
        return t.detach()


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


class MemoryMeter:
    """Owned by the recorder: samples the timeline at steps and measures a step's breakdown."""

    def __init__(self) -> None:
        self.samples: list[MemorySample] = []
        self.stride = 1
        self.device: torch.device | None = None
        self.capture: ActivationCapture | None = None
        self.pending: MemoryProfile | None = None  # measured this step, completed at its end
        self.profile: MemoryProfile | None = None  # the largest measured step
        self._modules: list[tuple[str, str, list[torch.nn.Parameter]]] = []  # of the measured step

    # -- the per-step timeline -------------------------------------------------------
    def sample_due(self, step: int) -> bool:
        return step < FIRST_STEPS or step % (EVERY * self.stride) == 0

    def sample(self, step: int) -> None:
        counters = cuda_counters(self.device)
        self.samples.append(MemorySample(
            step=step, rss=process_rss(), heap=heap_in_use(),
            allocated=counters["allocated"] if counters else None,
            reserved=counters["reserved"] if counters else None,
        ))
        if len(self.samples) > MAX_SAMPLES:  # a long run: keep every other point, sample half as often
            self.samples = self.samples[::2]
            self.stride *= 2

    def release(self) -> None:
        """Let go of the user's parameters (a step measured but never finished holds them)."""
        if self.capture is not None:
            self.end_forward()
        self.pending = None
        self._modules = []

    # -- the breakdown of a step -------------------------------------------------------
    def profile_due(self, step: int) -> bool:
        if self.capture is not None or self.pending is not None:
            return False
        return step in PROFILE_STEPS or (step > 0 and step % PROFILE_EVERY == 0)

    def begin(self, step: int, module: torch.nn.Module, args: tuple, names: dict[int, str],
              root_name: str, params: list[torch.nn.Parameter]) -> None:
        """The training forward of `step` starts: measure what it saves for backward."""
        # Parameters are counted as such, and buffers (BatchNorm's running statistics, which its
        # backward saves) exist with or without training: neither is an activation.
        exclude = {k[0] for t in [*params, *module.buffers()] if (k := storage_key(t)) is not None}
        batch = args[0] if args else None
        capture = ActivationCapture(exclude, names, root_name)
        if not capture.start(batch):
            return
        self.capture = capture
        # A detector's batch is a list of images (of their own sizes): its size is the list's.
        images = batch if isinstance(batch, (list, tuple)) and batch and all(
            isinstance(t, torch.Tensor) for t in batch) else None
        if images is not None:
            capture.batch_bytes = total_bytes(images)
        size = int(batch.shape[0]) if isinstance(batch, torch.Tensor) and batch.dim() > 0 else None
        self.pending = MemoryProfile(
            step=step,
            root=root_name,
            batch_size=len(images) if images is not None else size,
            parameters=total_bytes(params),
            gradients_in_forward=total_bytes(p.grad for p in params),
            batch=capture.batch_bytes,
        )
        self._modules = [(names.get(id(m), type(m).__name__), type(m).__name__, list(m.parameters(recurse=False)))
                         for m in module.modules()]

    def end_forward(self) -> None:
        """The forward is over (or raised): stop seeing saved tensors, keep what was seen."""
        capture, self.capture = self.capture, None
        if capture is None or self.pending is None:
            return
        capture.stop()
        profile = self.pending
        profile.activations = sum(capture.saved.values())
        profile.activation_dtypes = dict(capture.dtypes)
        rank = {n: i for i, n in enumerate(capture.order)}
        profile.saves = capture.sequence
        modules = [
            ModuleMemory(name=n, type=t, parameters=total_bytes(ps), activations=capture.saved.get(n, 0),
                         input_bytes=capture.kept_by_checkpoint(n))
            for n, t, ps in self._modules
        ]
        modules = [m for m in modules if m.parameters or m.activations or m.name in capture.inputs]
        modules.sort(key=lambda m: rank.get(m.name, len(rank)))
        profile.modules = modules

    def at_step(self, params: list[torch.nn.Parameter]) -> None:
        """Before optimizer.step(): the gradients exist now."""
        profile = self.pending
        if profile is None or self.capture is not None or profile.gradients:
            return
        profile.gradients = total_bytes(p.grad for p in params)
        grads = {n: total_bytes(p.grad for p in ps) for n, _, ps in self._modules}
        for m in profile.modules:
            m.gradients = grads.get(m.name, 0)

    def after_step(self, optimizers: Iterable[Any]) -> None:
        """After optimizer.step(): its state exists now (Adam's moments appear at the first step)."""
        profile, self.pending = self.pending, None
        self._modules = []
        if profile is None:
            return
        profile.optimizer_state = total_bytes(t for o in optimizers for t in optimizer_state_tensors(o))
        if self.profile is None or profile.step_total >= self.profile.step_total:
            self.profile = profile


class _GraphTag:
    """Rides in an autograd node's metadata; it lives exactly as long as the node (the graph)."""

    __slots__ = ("step", "__weakref__")

    def __init__(self, step: int) -> None:
        self.step = step


class GraphTags:
    """Which training steps' autograd graphs are still alive later.

    After backward() (without retain_graph) a graph's saved tensors are freed, but its nodes live
    as long as something references them: `total_loss += loss` chains every step's graph to the
    next, `losses.append(loss)` keeps each one. A tag in the metadata of the loss's graph root
    (a weak reference cannot point at the node itself) says whether the graph of a step two or
    more steps back is still alive.
    """

    KEEP = 64
    # Every step's graph for the first KEEP steps, then one in TAG_EVERY: a script that keeps its
    # graphs keeps every one, so a sample of them shows it as well.
    TAG_EVERY = 5

    def __init__(self) -> None:
        self.tags: list[tuple[int, Any, Any]] = []  # (step, weak tag, weak loss tensor)

    def due(self, step: int) -> bool:
        return step < self.KEEP or step % self.TAG_EVERY == 0

    def tag(self, step: int, loss: torch.Tensor, scaled: bool) -> None:
        node = loss.grad_fn
        if node is None:
            return
        tag = _GraphTag(step)
        nodes = [node]
        if scaled:  # GradScaler: the loss's own graph is under the multiplication by the scale
            nodes += [n for n, _ in node.next_functions if n is not None and not hasattr(n, "variable")]
        for n in nodes:
            n.metadata["torchdoctor"] = tag
        try:
            tensor_ref: Any = weakref.ref(loss)
        except TypeError:
            tensor_ref = lambda: None  # noqa: E731
        self.tags.append((step, weakref.ref(tag), tensor_ref))
        if len(self.tags) > self.KEEP:
            del self.tags[: len(self.tags) - self.KEEP]

    def kept(self, step: int) -> tuple[list[int], list[int]]:
        """(steps whose graphs are alive, steps whose loss tensors are alive), two or more back."""
        graphs = sorted({s for s, tag, _ in self.tags if s <= step - 2 and tag() is not None})
        tensors = sorted({s for s, _, t in self.tags if s <= step - 2 and t() is not None})
        self.tags = [entry for entry in self.tags if entry[1]() is not None]
        return graphs, tensors
