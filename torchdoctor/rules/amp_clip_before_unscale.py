"""amp_clip_before_unscale: clip_grad_norm_ on gradients a GradScaler has not unscaled yet."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from .base import Param, finding_for, rule

SNIPPET = ("scaler.scale(loss).backward()\n"
           "scaler.unscale_(optimizer)  # the gradients are the true ones from here on\n"
           "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={max_norm})\n"
           "scaler.step(optimizer)  # knows they are unscaled: does not divide again\n"
           "scaler.update()")


@rule("amp_clip_before_unscale", Severity.WARNING, "clip_grad_norm_ on scaled gradients (no GradScaler.unscale_ first)",
      {"min_clips": Param(3, "clips on scaled gradients needed before a verdict"),
       "share": Param(0.5, "share of the clips under a GradScaler that must be on scaled gradients")})
def amp_clip_before_unscale(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: with a `GradScaler`, `torch.nn.utils.clip_grad_norm_` called on the
    gradients of `scaler.scale(loss).backward()` before `scaler.unscale_(optimizer)`. Those
    gradients are the true ones times the loss scale (65536 to start), so the clip measures a
    norm about `scale` times too large and shrinks every gradient by that much; `scaler.step`
    then divides by the scale again. Seen by wrapping `clip_grad_norm_` for the run and asking
    the scaler whether it unscaled the optimizer this step.

    Why it matters: the gradients reach the optimizer about `scale` times smaller than the clip
    you asked for: `max_norm` in effect becomes `max_norm / scale` (1.5e-5 for 1.0 at 65536).
    With SGD that is a learning rate divided by the scale: the model barely moves, and the loss
    curve looks like a plateau. (Adam's normalization hides much of it, but the clip is still
    meaningless.)

    Not flagged: `scaler.unscale_(optimizer)` then the clip (the documented recipe); a clip
    without a GradScaler (bfloat16 autocast, float32); a disabled scaler
    (`GradScaler(enabled=False)`). A scaler built before torchdoctor started watching is not
    judged.
    """
    amp = tl.amp
    if amp.scaled_clips < p["min_clips"] or amp.scaled_clips < p["share"] * amp.clips:
        return
    samples = amp.clip_samples
    scales = [s["scale"] for s in samples if s.get("scale")]
    norms = [s["norm"] for s in samples if s.get("norm") is not None]
    max_norms = [s["max_norm"] for s in samples if s.get("max_norm") is not None]
    scale = statistics.median(scales) if scales else None
    max_norm = max_norms[0] if max_norms else None
    norm = statistics.median(norms) if norms else None
    effective = max_norm / scale if max_norm is not None and scale else None
    true_norm = norm / scale if norm is not None and scale else None
    title = (f"clip_grad_norm_ ran on gradients still scaled by the GradScaler in {amp.scaled_clips} of "
             f"{amp.clips} clips (no scaler.unscale_(optimizer) first)")
    if effective is not None:
        title += (f": it measured them at the scale {fmt(scale)}, so max_norm={fmt(max_norm)} acts as "
                  f"{fmt(effective)} on the true gradients")
    yield finding_for(
        "amp_clip_before_unscale", title,
        step=samples[0]["step"] if samples else None,
        evidence={"scale": scale, "max_norm": max_norm, "clip_norm": norm, "true_norm": true_norm,
                  "effective_max_norm": effective, "scaled_clips": amp.scaled_clips, "clips": amp.clips,
                  "scales": scales[:8]},
        fixes=[Fix("unscale_before_clip",
                   "Call scaler.unscale_(optimizer) before clip_grad_norm_, so the clip sees the true gradients"
                   + (f" (their norm is about {fmt(true_norm)}, not {fmt(norm)})" if true_norm is not None else "")
                   + "; scaler.step(optimizer) then does not unscale them a second time.",
                   {"max_norm": max_norm, "scale": scale},
                   SNIPPET.format(max_norm=fmt(max_norm) if max_norm is not None else "1.0"))],
    )
