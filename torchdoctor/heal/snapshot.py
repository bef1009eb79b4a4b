"""One copy of an optimizer's parameters and state, in CPU RAM: what a rollback returns to.

The model is what the optimizer holds: its parameters' values (not a module's state_dict, which
the optimizer hook cannot see), plus `optimizer.state_dict()` (momentum, Adam's moments and step
count, the param groups). Copies are taken to the CPU so that keeping one costs no device memory;
on CUDA taking it waits for the device, once per refresh (every `every` steps), never per step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


def _to_cpu(value: Any) -> Any:
    """A deep copy with every tensor on the CPU (the optimizer's load_state_dict moves them back)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


def params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class Snapshot:
    """The optimizer's parameters and state as they were before the update of step `step` (weights
    whose loss was finite)."""

    def __init__(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        self.step = step
        with torch.no_grad():
            self.params = [p.detach().to("cpu", copy=True) for p in params_of(optimizer)]
        self.state = _to_cpu(optimizer.state_dict())

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        """Put the weights and the optimizer's state back; the copy stays as it was (a second
        rollback returns to the same place)."""
        params = params_of(optimizer)
        if len(params) != len(self.params):
            raise RuntimeError("the optimizer's parameters changed since the copy was taken")
        with torch.no_grad():
            for p, saved in zip(params, self.params, strict=True):
                p.copy_(saved)
        # load_state_dict keeps a tensor that is already on the right device: give it a copy, so
        # the next steps' in-place updates do not write into the snapshot.
        optimizer.load_state_dict(copy.deepcopy(self.state))
