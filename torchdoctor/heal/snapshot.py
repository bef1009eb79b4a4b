"""One copy of an optimizer's parameters and state: what a rollback returns to.

The model is what the optimizer holds: its parameters' values (not a module's state_dict, which
the optimizer hook cannot see), plus `optimizer.state_dict()` (momentum, Adam's moments and step
count, the param groups). On a GPU with room for it (free memory at least `DEVICE_ROOM` times the
copy), the copy stays on the device: taking it is a device-to-device copy, no wait for the host.
Otherwise it goes to CPU RAM, so keeping one costs no device memory; taking it then waits for the
device once per refresh (every `every` steps), never per step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

DEVICE_ROOM = 4.0  # free device memory needed, in copies' worth, to keep the copy on the device


def _copy_to(value: Any, device: torch.device | None) -> Any:
    """A deep copy with every tensor on `device` (None: where it is); the optimizer's
    load_state_dict moves them back where the parameters are."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device or value.device, copy=True)
    if isinstance(value, dict):
        return {k: _copy_to(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_to(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy_to(v, device) for v in value)
    return copy.deepcopy(value)


def _tensors_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensors_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensors_bytes(v) for v in value)
    return 0


def copy_device(params: list[torch.Tensor], state: dict[str, Any]) -> torch.device | None:
    """None (keep the copy where the tensors are) on a CUDA device with room for it; else the CPU."""
    device = params[0].device if params else torch.device("cpu")
    if device.type != "cuda":
        return torch.device("cpu")
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except Exception:  # no answer: RAM is the safe place
        return torch.device("cpu")
    size = _tensors_bytes(params) + _tensors_bytes(state)
    return None if free >= DEVICE_ROOM * size else torch.device("cpu")


def params_of(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class Snapshot:
    """The optimizer's parameters and state as they were before the update of step `step` (weights
    whose loss was finite)."""

    def __init__(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        self.step = step
        params, state = params_of(optimizer), optimizer.state_dict()
        self.device = copy_device(params, state)  # None: on the device, beside the weights
        with torch.no_grad():
            self.params = [_copy_to(p, self.device) for p in params]
        self.state = _copy_to(state, self.device)

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
