"""What a GradScaler did: the scale before and after each update (a scale that went down means
the step's gradients held Inf/NaN and the scaler skipped optimizer.step())."""

from __future__ import annotations

import torch

from ..timeline import Timeline
from .readback import ReadbackQueue, read_now

MAX_AMP_RECORDS = 2000


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
