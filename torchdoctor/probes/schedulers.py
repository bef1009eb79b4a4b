"""Sees every learning-rate scheduler's `step()`: `LRScheduler.step` is wrapped for the run.

Schedulers have no hook. The step a scheduler's constructor makes itself (its `_step_count` is
still 0) is not the script's and is not reported; schedulers with a `step` of their own
(ReduceLROnPlateau, CosineAnnealingWarmRestarts, SequentialLR) are not seen, and a scheduler
stepped from inside another's step (SequentialLR, ChainedScheduler) counts once, as the outer.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .shared import Handlers


class SchedulerProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.saved: Any = None
        self.depth = 0

    def install(self) -> None:
        cls = getattr(torch.optim.lr_scheduler, "LRScheduler", None) or torch.optim.lr_scheduler._LRScheduler
        original = cls.__dict__["step"]
        self.saved = (cls, original)
        probe = self

        @functools.wraps(original)
        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(scheduler, "_step_count", 0) == 0 or probe.depth:
                return original(scheduler, *args, **kwargs)
            probe.depth += 1
            try:
                probe.recorder.on_scheduler_step(scheduler)
                return original(scheduler, *args, **kwargs)
            finally:
                probe.depth -= 1

        cls.step = step  # type: ignore[method-assign]

    def remove(self) -> None:
        if self.saved is not None:
            cls, original = self.saved
            cls.step = original  # type: ignore[method-assign]
            self.saved = None
