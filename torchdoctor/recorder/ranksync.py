"""Whether the ranks of a DDP run stay in sync: the wrapper actually used, and equal parameters.

Two observations, both cheap, both only in a run of more than one rank:

- Which models DDP wrapped (the DDP probe tells us), and whether each step's training forward
  went through the wrapper or straight to `ddp.module` (or the raw model object): a forward on
  the inner module builds a graph without DDP's reducer, so `backward()` all-reduces nothing and
  each rank trains its own model. Written as one `ddp_raw_module` event at the end.
- A fingerprint of the parameters after the update of a few sampled steps (0, 1, 3, 7, 15...): per
  parameter, the sum of a strided sample of at most `SAMPLE` elements, stacked into one small
  tensor that rides along with the next step's read-back (no host sync of its own). Each is a
  `param_fingerprint` event; rank 0 compares the ranks' at the merge (rules/ddp_out_of_sync.py).
"""

from __future__ import annotations

import linecache
from typing import Any

import torch

from ..timeline import Event, Timeline
from .models import Models, user_frame
from .readback import ReadbackQueue

SAMPLE = 64  # elements summed per parameter
MAX_PARAMS = 256  # parameters fingerprinted (the first ones)
MAX_FINGERPRINTS = 12
MAX_NAMES = 8


def fingerprint_due(step: int) -> bool:
    """Steps 0, 1, 3, 7, 15...: the count of steps done is a power of two."""
    done = step + 1
    return done & (done - 1) == 0


class RankSync:
    def __init__(self, timeline: Timeline, models: Models, queue: ReadbackQueue) -> None:
        self.timeline = timeline
        self.models = models
        self.queue = queue
        self.inner: dict[int, Any] = {}  # id(ddp.module) -> the wrapper's ddp
        self.wrappers: set[int] = set()
        self.raw_steps: set[int] = set()  # steps with a training forward on a wrapped module itself
        self.wrapped_steps: set[int] = set()
        self.raw_site: dict[str, Any] | None = None
        self.raw_module: Any = None
        self.fingerprints = 0

    def distributed(self) -> bool:
        return self.timeline.run.world_size > 1

    def on_ddp_wrap(self, ddp: torch.nn.Module) -> None:
        inner = getattr(ddp, "module", None)
        if isinstance(inner, torch.nn.Module):
            self.inner[id(inner)] = inner
            self.wrappers.add(id(ddp))

    def on_training_forward(self, module: torch.nn.Module, step: int) -> None:
        if not self.inner:
            return
        key = id(module)
        if key in self.wrappers:
            self.wrapped_steps.add(step)
        elif key in self.inner and self.inner[key] is module:
            if not self.raw_steps:
                self.raw_site = user_site()
                self.raw_module = module
            self.raw_steps.add(step)

    def after_step(self, step: int) -> None:
        """After step `step`'s update: queue its fingerprint, on sampled steps of a distributed run."""
        if not fingerprint_due(step) or not self.distributed() or self.fingerprints >= MAX_FINGERPRINTS:
            return
        named = [(root.param_names.get(id(p), ""), p) for root, p in self.models.trainable()][:MAX_PARAMS]
        if not named:
            return
        self.fingerprints += 1
        with torch.no_grad():
            sums = [_sample(p).sum() for _, p in named]
            tensor = torch.stack([s.to(sums[0].device) for s in sums])
        names = [n for n, _ in named]

        def decode(values: list[float]) -> None:
            self.timeline.events.append(Event("param_fingerprint", step, None, {"names": names, "values": values}))

        self.queue.add(tensor, decode)

    def finish(self) -> None:
        if not self.raw_steps:
            return
        module = self.raw_module
        names = [root.param_names.get(id(p), "") for root, p in self.models.trainable()
                 if module is not None and any(p is q for q in module.parameters())]
        self.timeline.events.append(Event("ddp_raw_module", min(self.raw_steps), None, {
            "model": type(module).__name__ if module is not None else None,
            "raw_steps": len(self.raw_steps),
            "unsynced_steps": len(self.raw_steps - self.wrapped_steps),
            "first_unsynced": min(self.raw_steps - self.wrapped_steps, default=None),
            "wrapped_steps": len(self.wrapped_steps),
            "parameters": names[:MAX_NAMES],
            "parameter_count": len(names),
            "site": self.raw_site,
        }))
        self.raw_module = None


def _sample(p: torch.Tensor) -> torch.Tensor:
    flat = p.detach().reshape(-1)
    stride = max(1, flat.numel() // SAMPLE)
    return flat[::stride].float()


def user_site(depth: int = 40) -> dict[str, Any] | None:
    """The first frame outside torch and torchdoctor: the user's statement that made the call."""
    frame = user_frame(depth)
    if frame is None:
        return None
    filename = frame.f_code.co_filename
    return {"file": filename, "line": frame.f_lineno, "text": linecache.getline(filename, frame.f_lineno).strip()}
