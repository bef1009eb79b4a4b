"""What a GradScaler did: the scale before and after each update (a scale that went down means
the step's gradients held Inf/NaN and the scaler skipped optimizer.step())."""

from __future__ import annotations

from typing import Any

import torch

from ..timeline import Timeline
from .readback import ReadbackQueue, read_now

MAX_AMP_RECORDS = 2000
MAX_CLIP_SAMPLES = 16  # scaled clips whose scale and norm are read back (the first ones)


class AmpWatch:
    def __init__(self, timeline: Timeline, queue: ReadbackQueue) -> None:
        self.timeline = timeline
        self.queue = queue

    def on_update(self, before: torch.Tensor | float, after: torch.Tensor | float, step: int) -> None:
        """The scales are copies on the scaler's device; on CPU they are read now, elsewhere with
        the next step's read-back (by design the scaler skips steps while it calibrates)."""
        pair = [torch.as_tensor(v, dtype=torch.float32).reshape(1) for v in (before, after)]
        device = pair[1].device if isinstance(after, torch.Tensor) else pair[0].device
        scales = torch.cat([v.to(device) for v in pair])
        if read_now(device):
            self.apply(step, scales.tolist())
        else:
            self.queue.add(scales, lambda v: self.apply(step, v))

    def apply(self, step: int, values: list[float]) -> None:
        before, after = values
        amp = self.timeline.amp
        amp.updates += 1
        if after < before:
            amp.skipped += 1
            amp.skipped_steps.append(step)
            del amp.skipped_steps[:-MAX_AMP_RECORDS]
        amp.scales.append((amp.updates - 1, after))
        del amp.scales[:-MAX_AMP_RECORDS]

    def on_clip(self, scale: torch.Tensor | None, norm: Any, max_norm: Any, step: int) -> None:
        """A clip_grad_norm_ call while a GradScaler is in use; `scale` is the scaler's scale
        tensor when the gradients were still scaled (no unscale_ first), None when they were not.
        The first scaled clips' scale and norm ride along with the step's read-back."""
        amp = self.timeline.amp
        amp.clips += 1
        if scale is None:
            return
        amp.scaled_clips += 1
        if len(amp.clip_samples) >= MAX_CLIP_SAMPLES:
            return
        sample: dict[str, Any] = {"step": step, "scale": None, "norm": None,
                                  "max_norm": float(max_norm) if isinstance(max_norm, (int, float)) else None}
        amp.clip_samples.append(sample)
        for key, value in (("scale", scale), ("norm", norm)):
            if not isinstance(value, torch.Tensor):
                continue
            copy = value.detach().reshape(-1)[:1].float().clone()  # update() changes the scale in place

            def decode(v: list[float], key: str = key) -> None:
                sample[key] = v[0]

            if read_now(copy.device):
                decode(copy.tolist())
            else:
                self.queue.add(copy, decode)
