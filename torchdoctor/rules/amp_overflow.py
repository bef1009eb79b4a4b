"""amp_overflow: a GradScaler that keeps skipping steps, or whose scale collapses."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._numbers import thin
from .base import Param, finding_for, rule


@rule("amp_overflow", Severity.WARNING, "A GradScaler keeps skipping steps, or its scale collapses",
      {"min_scale": Param(1.0, "a scale below this means the gradients overflow even unscaled"),
       "late_skip_share": Param(0.25, "share of the second half's updates skipped that is too many"),
       "min_updates": Param(10, "scaler updates needed before a verdict")})
def amp_overflow(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: with mixed precision (`torch.amp.autocast` and a `GradScaler`), the scaler
    multiplies the loss so float16 gradients do not underflow, and skips `optimizer.step()` when
    the scaled gradients hold Inf/NaN, halving the scale. Skips while it calibrates at the start,
    and one now and then, are by design (they are not `nonfinite_gradient` alarms). It is a
    problem when the scale collapses below 1 (the gradients overflow or are NaN even unscaled:
    every step is thrown away), or when the scaler keeps skipping a large share of the steps
    long after it calibrated.

    Why it matters: a skipped step is a batch trained on for nothing; a collapsed scale means
    nothing trains at all, while the loss curve may still look plausible.

    What to do: find the operation whose backward is Inf/NaN (check the gradients after
    `scaler.unscale_(optimizer)`); prefer bfloat16 autocast, which has float32's range and needs
    no scaler; clip the gradients after unscaling; lower the learning rate if the skips come
    late, with weights that grew.
    """
    amp = tl.amp
    if amp.updates < p["min_updates"]:
        return
    scales = [s for _, s in amp.scales]
    lowest = min(scales) if scales else None
    # The second half by each entry's own update index: a long run's history keeps only its last
    # entries, so a position in it is not an update. Its share is of the updates it still shows.
    half = amp.updates // 2
    late_pairs = [after < before for (_, before), (update, after) in zip(amp.scales, amp.scales[1:], strict=False)
                  if update >= half]
    late_share = sum(late_pairs) / max(1, len(late_pairs))
    collapsed = lowest is not None and lowest < p["min_scale"]
    if not collapsed and late_share <= p["late_skip_share"]:
        return
    every = amp.skipped == amp.updates
    title = (f"The GradScaler skipped {amp.skipped} of {amp.updates} steps"
             + (f" and its scale collapsed to {fmt(lowest)}: the gradients are Inf/NaN whatever the scale"
                if collapsed else f", {late_share:.0%} of them after it had calibrated"))
    fixes = [
        Fix("find_nonfinite_gradient",
            "Find the operation whose backward overflows or is undefined: unscale, then look for the first "
            "parameters (in model order) whose gradient is not finite; an epsilon or a clamp goes just after them.",
            {},
            "scaler.scale(loss).backward()\nscaler.unscale_(optimizer)\n"
            "bad = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]\n"
            "print(bad)"),
        Fix("mixed_precision",
            "Use bfloat16 autocast: float32's range, so no overflow and no GradScaler.",
            {"dtype": "bfloat16"},
            "with torch.autocast(device_type=\"cuda\", dtype=torch.bfloat16):\n    loss = criterion(model(x), y)\n"
            "loss.backward()\noptimizer.step()"),
    ]
    if not every:
        fixes.append(Fix("clip_gradients", "Clip the gradients after unscaling, before the scaler's step.",
                         {"max_norm": 1.0},
                         "scaler.unscale_(optimizer)\ntorch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
                         "scaler.step(optimizer)\nscaler.update()"))
    yield finding_for(
        "amp_overflow",
        title,
        severity=Severity.WARNING,
        step=amp.skipped_steps[0] if amp.skipped_steps else None,
        evidence={
            "skipped_steps": amp.skipped,
            "updates": amp.updates,
            "late_skip_share": late_share,
            "lowest_scale": lowest,
            "last_scale": scales[-1] if scales else None,
            "scale_history": thin(amp.scales, 40),
        },
        fixes=fixes,
    )
