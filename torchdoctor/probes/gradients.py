"""Per-step gradient and loss numbers, computed on the device and read back in one transfer.

Reading back once per step matters on CUDA, where every `.item()` stalls the
stream; on CPU it costs nothing extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class StepNumbers:
    losses: list[float]
    total_norm: float
    layer_norms: dict[int, float]  # layer index -> L2 norm of its gradients
    nonfinite_params: list[int]  # positions in the params list whose grad holds NaN/Inf
    extras: list[list[float]] = field(default_factory=list)  # the `extras` tensors, read back


def _norms(grads: list[torch.Tensor]) -> torch.Tensor:
    dense = [g for g in grads if not g.is_sparse]
    if len(dense) == len(grads):
        try:
            norms = torch._foreach_norm(dense)
        except Exception:  # older builds or exotic dtypes: the slow path is fine
            norms = [g.norm() for g in dense]
    else:
        norms = [g.coalesce().values().norm() if g.is_sparse else g.norm() for g in grads]
    device = norms[0].device
    return torch.stack([n.float().to(device) for n in norms])


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


def _read_back(
    parts: list[torch.Tensor], extras: list[torch.Tensor], device: torch.device
) -> tuple[list[float], list[list[float]]]:
    """One transfer for the step's numbers and the extras riding along with them."""
    flat = [p.float().to(device).reshape(-1) for p in [*parts, *extras]]
    host = torch.cat(flat).tolist() if flat else []
    n = sum(p.numel() for p in parts)
    out, k = [], n
    for e in extras:
        out.append(host[k:k + e.numel()])
        k += e.numel()
    return host[:n], out


def measure_step(
    params: list[torch.nn.Parameter], layer_of: list[int], losses: list[torch.Tensor],
    extras: list[torch.Tensor] | None = None,
) -> StepNumbers:
    """Gradient norms per parameter, grouped per layer, plus the pending loss values.

    `layer_of[i]` is the layer index of `params[i]`. Parameters without a gradient
    are skipped. One device-to-host copy carries everything, `extras` (other numbers the
    recorder kept on the device, e.g. the last sampled update) included.
    """
    extras = extras or []
    pairs = [(p.grad, layer_of[i]) for i, p in enumerate(params) if p.grad is not None]
    loss_vals = [t.detach().float().reshape(1) for t in losses]
    if not pairs:
        host, extra_values = _read_back(loss_vals, extras, torch.device("cpu"))
        return StepNumbers(host, math.nan, {}, [], extra_values)
    grads = [g for g, _ in pairs]
    norms = _norms(grads)
    device = norms.device
    layers = sorted({li for _, li in pairs})
    slot = {li: k for k, li in enumerate(layers)}
    index = index_tensor(tuple(slot[li] for _, li in pairs), device)
    layer_sq = torch.zeros(len(layers), device=device).index_add_(0, index, norms.square())
    parts = [*loss_vals, layer_sq.sum().sqrt().reshape(1), layer_sq.sqrt()]
    host, extra_values = _read_back(parts, extras, device)
    n = len(loss_vals)
    total = host[n]
    layer_norms = dict(zip(layers, host[n + 1 :], strict=True))
    nonfinite: list[int] = []
    if not math.isfinite(total):
        # Rare path: find which parameters went non-finite (a second read-back is fine here).
        per_param = norms.tolist()
        positions = [i for i, p in enumerate(params) if p.grad is not None]
        suspects = [k for k, v in enumerate(per_param) if not math.isfinite(v)]
        # A huge but finite gradient can overflow its float32 norm: check the values themselves.
        nonfinite = [positions[k] for k in suspects if not bool(torch.isfinite(grads[k]).all())]
    return StepNumbers(host[:n], total, layer_norms, nonfinite, extra_values)
