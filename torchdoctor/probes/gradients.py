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
    measured: bool = True  # False: a step whose gradients were not looked at (not due, see norms_due)


# Every step's gradient norms for a run's first steps, where a learning rate far too high blows
# up, then every NORM_EVERY-th: reading every gradient is the largest fixed cost of a step (0.2 ms
# on a small CNN, 3 ms on ResNet-18 on CPU), and a trend, a growth or a plateau shows as well in
# one step of five. A non-finite loss has its gradients looked at on any step.
DENSE_NORM_STEPS = 50
NORM_EVERY = 5


def norms_due(step: int) -> bool:
    return step < DENSE_NORM_STEPS or step % NORM_EVERY == 0


# On CPU a BLAS dot product reads a large gradient about twice as fast as `_foreach_norm`
# (one fused kernel on CUDA, a per-tensor loop on CPU); small tensors are cheaper in one fused
# call. Measured on ResNet-18's 11.2M gradients, 2 threads: 2.8 ms against 4.8 ms.
DOT_NUMEL = 1 << 16


def _gradient_sizes(grads: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[bool]]:
    """One 0-d float32 tensor per gradient on the gradients' device: its L2 norm, or (where
    `squared[k]`) its squared norm. Every tensor op here costs tens of microseconds right after
    a backward on CPU (cold caches), so the count of ops is kept small: one fused norm for the
    small gradients, one dot product per large one, no squaring or grouping on the device; and
    the gradients are looked at in one pass."""
    device = grads[0].device
    cpu = device.type == "cpu"
    squared, small, convert = [], [], False
    for g in grads:
        if g.is_sparse:
            return [(g.coalesce().values() if g.is_sparse else g).float().norm().to(device) for g in grads], \
                [False] * len(grads)
        float32 = g.dtype == torch.float32
        big = cpu and float32 and g.numel() >= DOT_NUMEL and g.is_contiguous()
        squared.append(big)
        if not big:
            small.append(g)
            convert = convert or not float32 or g.device != device
    try:
        small_norms = list(torch._foreach_norm(small)) if small else []
    except Exception:  # older builds or exotic dtypes: the slow path is fine
        small_norms = [g.norm() for g in small]
        convert = True
    if len(small) == len(grads):
        out = small_norms
    else:
        rest = iter(small_norms)
        out = [torch.dot(g.view(-1), g.view(-1)) if big else next(rest) for g, big in zip(grads, squared, strict=True)]
    if convert:
        out = [t if t.dtype == torch.float32 and t.device == device else t.float().to(device) for t in out]
    return out, squared


def _read_back(scalars: list[torch.Tensor], extras: list[torch.Tensor],
               device: torch.device, eager: bool = False) -> tuple[list[float], list[list[float]]]:
    """One transfer for the step's numbers (0-d float32 tensors) and the extras riding along."""
    if not scalars and not extras:
        return [], []
    if eager and not extras:
        # Where a read is free (CPU), reading each number skips the stack (15-25 us after a backward).
        return [t.item() for t in scalars], []
    parts = [torch.stack(scalars)] if scalars else []
    parts += [e if e.dtype == torch.float32 and e.device == device and e.dim() == 1
              else e.float().to(device).reshape(-1) for e in extras]
    host = (torch.cat(parts) if len(parts) > 1 else parts[0]).tolist()
    n = len(scalars)
    out, k = [], n
    for e in extras:
        out.append(host[k:k + e.numel()])
        k += e.numel()
    return host[:n], out


def measure_step(
    params: list[torch.nn.Parameter], layer_of: list[int], losses: list[torch.Tensor],
    extras: list[torch.Tensor] | None = None, eager: bool = False,
) -> StepNumbers:
    """Gradient norms per parameter, grouped per layer, plus the pending loss values.

    `layer_of[i]` is the layer index of `params[i]`. Parameters without a gradient
    are skipped. One device-to-host copy carries everything, `extras` (other numbers the
    recorder kept on the device, e.g. the last sampled update) included. `eager`: the device
    reads a number for free (the recorder's `read_now`), so no single transfer is needed.
    """
    extras = extras or []
    grads, positions = [], []
    for i, p in enumerate(params):
        g = p.grad
        if g is not None:
            grads.append(g)
            positions.append(i)
    loss_vals = [t if t.dtype == torch.float32 and t.dim() == 0 else t.detach().float().reshape(())
                 for t in losses]
    if not positions:
        device = loss_vals[0].device if loss_vals else torch.device("cpu")
        host, extra_values = _read_back([t.to(device) for t in loss_vals], extras, device)
        return StepNumbers(host, math.nan, {}, [], extra_values)
    sizes, squared = _gradient_sizes(grads)
    device = sizes[0].device
    eager = eager and all(t.device == device for t in loss_vals)  # free for the losses' device only
    host, extra_values = _read_back([*[t if t.device == device else t.to(device) for t in loss_vals], *sizes],
                                    extras, device, eager)
    n = len(loss_vals)
    layer_sq: dict[int, float] = {}
    per_param = []
    for k, value in enumerate(host[n:]):
        sq = value if squared[k] else value * value
        per_param.append(sq)
        li = layer_of[positions[k]]
        layer_sq[li] = layer_sq.get(li, 0.0) + sq
    layer_norms = {li: math.sqrt(v) if v >= 0 else math.nan for li, v in sorted(layer_sq.items())}
    total_sq = sum(per_param)
    total = math.sqrt(total_sq) if total_sq >= 0 else math.nan
    nonfinite: list[int] = []
    if not math.isfinite(total):
        # Rare path: find which parameters went non-finite. A huge but finite gradient can
        # overflow its float32 square: check the values themselves.
        suspects = [k for k, v in enumerate(per_param) if not math.isfinite(v)]
        nonfinite = [positions[k] for k in suspects if not bool(torch.isfinite(grads[k]).all())]
    return StepNumbers(host[:n], total, layer_norms, nonfinite, extra_values)
