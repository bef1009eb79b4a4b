"""Sees every `DistributedDataParallel` the script builds: its `__init__` is wrapped for the run.

DDP has no hook for its construction, and nothing in the wrapped model points back at its wrapper,
so a training forward on `ddp.module` (which skips the gradient all-reduce) cannot be told from a
plain model's forward without knowing which models were wrapped. The recorder is told once per
wrapper, after its constructor returned (its `.module` set, its parameters broadcast from rank 0).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .shared import Handlers


class DDPProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.saved: Any = None

    def install(self) -> None:
        import torch.distributed as dist

        if not dist.is_available():
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        original = DDP.__dict__["__init__"]
        self.saved = (DDP, original)
        probe = self

        @functools.wraps(original)
        def __init__(ddp: Any, *args: Any, **kwargs: Any) -> None:
            original(ddp, *args, **kwargs)
            probe.recorder.on_ddp_wrap(ddp)

        DDP.__init__ = __init__  # type: ignore[method-assign]

    def remove(self) -> None:
        if self.saved is not None:
            cls, original = self.saved
            cls.__init__ = original  # type: ignore[method-assign]
            self.saved = None
