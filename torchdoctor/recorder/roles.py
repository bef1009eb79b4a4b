"""Several models trained together (a GAN): which model makes what another judges, each model's
own loss, what each optimizer's losses reach, and how diverse the generator's outputs are.

A generator is the model whose output another model is given (`netD(fake.detach())` shares
`fake`'s storage, so the flow is seen through a detach); that other model is the discriminator.
What a backward reaches is read from its graph, on the first few backward calls only.
"""

from __future__ import annotations

from typing import Any

import torch

from ..timeline import StepRecord, Timeline
from .models import Models
from .readback import ReadbackQueue

FLOW_STEPS = 8  # the steps in which the flow between models is looked for
CHECKED_BACKWARDS = 16  # backward graphs walked, at most
MAX_GRAPH_NODES = 50_000
MAX_DIVERSITY_SAMPLES = 200


def storage_of(x: Any) -> int | None:
    if not isinstance(x, torch.Tensor) or x.is_sparse:
        return None
    try:
        return x.untyped_storage().data_ptr()
    except Exception:
        return None


def reached_params(loss: torch.Tensor, limit: int = MAX_GRAPH_NODES) -> set[int] | None:
    """The ids of the leaf tensors a backward from `loss` accumulates into; None past `limit`."""
    fn = loss.grad_fn
    if fn is None:
        return set()
    seen: set[int] = set()
    stack = [fn]
    out: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > limit:
            return None
        variable = getattr(node, "variable", None)
        if variable is not None:
            out.add(id(variable))
            continue
        stack.extend(nxt for nxt, _ in node.next_functions)
    return out


def diversity(output: torch.Tensor) -> torch.Tensor | None:
    """The spread of a batch of outputs across its samples over their spread overall, on the
    device: about 1 for samples as different as their values, 0 when every sample is the same."""
    if output.dim() < 2 or output.shape[0] < 2 or not output.is_floating_point():
        return None
    x = output.detach().float().flatten(1)
    return (x.std(dim=0).mean() / (x.std() + 1e-12)).reshape(1)


class Roles:
    def __init__(self, timeline: Timeline, models: Models, queue: ReadbackQueue) -> None:
        self.timeline = timeline
        self.models = models
        self.queue = queue
        self.outputs: dict[int, tuple[int, str]] = {}  # storage of each model's last training output -> label
        self.checked = 0
        self.reach_of: dict[int, set[str]] = {}  # id(backwarded loss) -> the models its gradient reaches
        self.entries: dict[int, dict[str, Any]] = {}  # id(optimizer) -> its entry in timeline.roles.optimizers
        self.diversity_steps: set[int] = set()
        self._several: tuple[int, bool] = (0, False)  # (roots counted, several labels among them)

    @property
    def several(self) -> bool:
        """Asked at every backward: recounted only when a root was added (labels do not change)."""
        roots = self.models.roots
        if self._several[0] != len(roots):
            self._several = (len(roots), len({state.label for state in roots.values()}) >= 2)
        return self._several[1]

    # -- forwards --------------------------------------------------------------------------
    def on_training_input(self, label: str, args: tuple, step: int) -> None:
        """A model's training forward starts: is it given another model's output?"""
        roles = self.timeline.roles
        if roles.generator is not None or step >= FLOW_STEPS or not self.outputs or not args:
            return
        ptr = storage_of(args[0])
        source = self.outputs.get(ptr) if ptr else None
        if source is not None and source != label:
            roles.generator, roles.discriminator = source, label

    def on_training_output(self, label: str, output: Any, step: int, due: bool) -> None:
        """A model's training forward returned: remember where its output lives (while the flow
        is still looked for), and sample the generator's diversity on sampled steps."""
        roles = self.timeline.roles
        if roles.generator is None:
            if step < FLOW_STEPS:  # the flow is looked for in the first steps only
                ptr = storage_of(output)
                if ptr:
                    self.outputs = {k: v for k, v in self.outputs.items() if v != label}
                    self.outputs[ptr] = label
            return  # no generator (yet): no diversity to sample
        self.outputs = {}
        if (label != roles.generator or not due or step in self.diversity_steps
                or len(roles.diversity) >= MAX_DIVERSITY_SAMPLES or not isinstance(output, torch.Tensor)):
            return
        value = diversity(output)
        if value is None:
            return
        self.diversity_steps.add(step)
        self.queue.add(value, lambda v: roles.diversity.append((step, v[0])))

    # -- backward and steps -------------------------------------------------------------------
    def on_backward(self, loss: torch.Tensor, kept: torch.Tensor) -> None:
        """Which models this loss's gradient reaches, on the first backward calls of a run with
        several models; noted under `kept`, the detached loss the step reads back."""
        if self.checked >= CHECKED_BACKWARDS or not self.several:
            return
        self.checked += 1
        ids = reached_params(loss)
        if ids is not None:
            self.reach_of[id(kept)] = {label for i in ids if (label := self.models.label_of_param(i)) is not None}

    def at_step(self, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                counted: list[torch.Tensor], loss: float | None, record: StepRecord) -> None:
        """An optimizer stepped on the losses backwarded since its last zero_grad() (`counted`):
        note the models it holds and those the losses reach, and the step's loss under its model."""
        reaches = [self.reach_of.get(id(t)) for t in counted] if self.reach_of else []
        self.reach_of = {}
        entry = self.entries.get(id(optimizer))
        if entry is None:
            held: list[str] = []
            for p in params:
                label = self.models.label_of_param(id(p))
                if label is not None and label not in held:
                    held.append(label)
            taken = {e["key"] for e in self.entries.values()}
            key = held[0] if len(held) == 1 and held[0] not in taken else f"optimizer {len(self.entries)}"
            entry = {"index": len(self.entries), "optimizer": type(optimizer).__name__, "models": held,
                     "reaches": [], "steps": 0, "key": key}
            self.entries[id(optimizer)] = entry
            self.timeline.roles.optimizers.append(entry)
        entry["steps"] += 1
        for reach in reaches:
            for label in sorted(reach or ()):
                if label not in entry["reaches"]:
                    entry["reaches"].append(label)
        if loss is not None:
            if record.model_losses is None:
                record.model_losses = {entry["key"]: loss}
            else:
                record.model_losses[entry["key"]] = loss

    def finish(self) -> None:
        """One optimizer: its loss is the run's loss, no series of its own."""
        if len(self.entries) < 2:
            for record in self.timeline.steps:
                record.model_losses = None

    def clear(self) -> None:
        self.outputs = {}
        self.reach_of = {}
        self.entries = {}
