"""How far an optimizer step moves the weights: ||w_after - w_before|| / ||w_before||.

The ratio tells a learning rate that is too small (about 1e-3 per step is typical; 1e-7 barely
moves) from weights that do not move at all. It needs a copy of the weights before the step, so
it is measured on sampled steps only: the first few, every `every`-th up to step `later_from`,
then every `later_every`-th (a copy of the weights costs a model's worth of memory traffic). The
numbers stay on the device until the next step's single read-back.
"""

from __future__ import annotations

import torch

FIRST_STEPS = 3
EVERY = 10
LATER_FROM = 50
LATER_EVERY = 50
# The copy of the weights must not be what runs the patient out of memory: a model larger than
# this is not measured (the report then says the update ratio is unknown).
MAX_COPY_BYTES = 512 * 2**20


_INDEXES: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}


def index_tensor(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The layer index of each parameter, made on the device once: `torch.tensor(..., device=cuda)`
    copies from host memory and waits for the device, every call. The layout rarely changes."""
    key = (values, device)
    tensor = _INDEXES.get(key)
    if tensor is None:
        if len(_INDEXES) >= 64:
            _INDEXES.clear()
        tensor = _INDEXES[key] = torch.tensor(values, dtype=torch.long, device=device)
    return tensor


class UpdateSampler:
    def __init__(self, first: int = FIRST_STEPS, every: int = EVERY, later_from: int = LATER_FROM,
                 later_every: int = LATER_EVERY) -> None:
        self.first = first
        self.every = every
        self.later_from = later_from
        self.later_every = later_every
        self.before: list[torch.Tensor] | None = None

    def due(self, step: int) -> bool:
        if step < self.first:
            return True
        return step % (self.every if step <= self.later_from else self.later_every) == 0

    def capture(self, params: list[torch.nn.Parameter]) -> None:
        if sum(p.numel() * p.element_size() for p in params) > MAX_COPY_BYTES:
            self.before = None
            return
        with torch.no_grad():
            self.before = [p.detach().clone() for p in params]

    def measure(self, params: list[torch.nn.Parameter], layer_of: list[int], num_layers: int) -> torch.Tensor | None:
        """[||dw||^2, ||w||^2] in total, then per layer (dw^2 for each layer, then w^2 for each),
        as one float tensor still on the device."""
        before, self.before = self.before, None
        if before is None or len(before) != len(params) or not params:
            return None
        with torch.no_grad():
            after = [p.detach() for p in params]
            try:
                moved = torch._foreach_norm(torch._foreach_sub(after, before))
                size = torch._foreach_norm(before)
            except Exception:  # mixed dtypes or devices the fused kernels refuse: one by one
                moved = [(a - b).norm() for a, b in zip(after, before, strict=True)]
                size = [b.norm() for b in before]
            device = moved[0].device
            moved_sq = torch.stack([m if m.dtype == torch.float32 and m.device == device else m.float().to(device)
                                    for m in moved]).square()
            size_sq = torch.stack([s if s.dtype == torch.float32 and s.device == device else s.float().to(device)
                                   for s in size]).square()
            index = index_tensor(tuple(layer_of), device)
            layer_moved = torch.zeros(num_layers, device=device).index_add_(0, index, moved_sq)
            layer_size = torch.zeros(num_layers, device=device).index_add_(0, index, size_sq)
            return torch.cat([moved_sq.sum().reshape(1), size_sq.sum().reshape(1), layer_moved, layer_size])


def ratios(values: list[float], num_layers: int) -> tuple[float | None, list[float | None]]:
    """The read-back of `measure`: total ratio and per-layer ratios (None where a layer has no weight)."""
    def ratio(moved_sq: float, size_sq: float) -> float | None:
        if size_sq > 0:
            return (moved_sq / size_sq) ** 0.5
        return 0.0 if moved_sq == 0 else None

    total = ratio(values[0], values[1])
    moved, size = values[2:2 + num_layers], values[2 + num_layers:2 + 2 * num_layers]
    return total, [ratio(m, s) if (m or s) else None for m, s in zip(moved, size, strict=True)]
