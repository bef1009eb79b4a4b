"""The recorder's side of the memory picture: when to measure a step's breakdown, when to sample
the process's memory, which steps' graphs are still alive, and the totals at the end."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..probes.memory import GraphTags, cuda_capacity, cuda_counters
from ..probes.process import machine_ram
from ..probes.shared import Shared
from ..timeline import Timeline
from .models import RootState, compiled_original


class MemoryWatch:
    def __init__(self, timeline: Timeline, shared: Shared) -> None:
        self.timeline = timeline
        self.meter = shared.meter
        self.graph_tags = GraphTags()

    def on_training_forward(self, state: RootState, module: torch.nn.Module, args: tuple, step: int) -> None:
        if not self.meter.profile_due(step):
            return
        if compiled_original(module) is not None:  # torch.compile'd: saved tensors are its own
            return
        if self.meter.device is None:
            first = next(module.parameters(), None)
            self.meter.device = first.device if first is not None else None
        self.meter.begin(step, module, args, state.module_names, state.module_names[id(module)],
                         list(module.parameters()))

    def on_forward_exit(self) -> None:
        if self.meter.capture is not None:
            self.meter.end_forward()

    def on_backward(self, tensors: Any, retain_graph: bool, root: Any, step: int) -> None:
        """Tag the graph of the tensor backwarded (the scaled loss under AMP) to see it outlive its step."""
        if retain_graph:
            self.timeline.memory.retain_graph_calls += 1
        if not self.graph_tags.due(step):
            return
        if isinstance(root, (list, tuple)) and len(root) == 1:
            root = root[0]
        if isinstance(root, torch.Tensor) and root.grad_fn is not None:
            loss = tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
            self.graph_tags.tag(step, root, scaled=loss is not root)

    def at_step(self, params: list[torch.nn.Parameter]) -> None:
        if self.meter.pending is not None:
            self.meter.at_step(params)

    def after_step(self, step: int, optimizers: Iterable[Any]) -> None:
        """`step`: the step just taken."""
        meter = self.meter
        if meter.pending is not None:
            meter.after_step(optimizers)
        if meter.sample_due(step):
            meter.sample(step)
            graphs, tensors = self.graph_tags.kept(step)
            self.timeline.memory.note_kept(step, graphs, tensors)

    def finish(self) -> None:
        meter, info = self.meter, self.timeline.memory
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

    def release(self) -> None:
        self.meter.release()
        self.graph_tags.tags.clear()
