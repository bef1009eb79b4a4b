"""Discovers models and loss modules through PyTorch's global module forward hooks.

Only forward hooks are used: global *full backward* hooks break in-place ReLU.
A module called while no other module is running is a root: a model, or a loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

if TYPE_CHECKING:
    from ..recorder import Recorder, RootState


class ModuleProbe:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.depth = 0
        self.ordering: RootState | None = None
        self.handles: list[Any] = []
        self.local_handles: dict[int, Any] = {}

    def install(self) -> None:
        self.handles = [
            register_module_forward_pre_hook(self._pre),
            register_module_forward_hook(self._post, always_call=True),
        ]

    def remove(self) -> None:
        for h in self.handles + list(self.local_handles.values()):
            h.remove()
        self.handles = []
        self.local_handles = {}

    def _kwargs_hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """Global pre-hooks do not see keyword arguments; a model's own pre-hook does."""
        if self.depth == 1 and not self.recorder.replaying:
            self.recorder.on_root_kwargs(module, args, kwargs)
        return None

    def _pre(self, module: torch.nn.Module, args: tuple) -> None:
        rec = self.recorder
        if rec.replaying:
            return None
        if self.depth == 0:
            state = rec.on_root_call(module, args, {})
            if state is not None:
                if not state.order_done:
                    self.ordering = state
                if id(module) not in self.local_handles:
                    self.local_handles[id(module)] = module.register_forward_pre_hook(
                        self._kwargs_hook, with_kwargs=True)
        elif self.ordering is not None:
            self.ordering.forward_order.append(id(module))
        self.depth += 1
        return None

    def _post(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        rec = self.recorder
        if rec.replaying:
            return None
        self.depth = max(0, self.depth - 1)
        if self.depth == 0:
            self.ordering = None
            rec.on_root_done(module, output)
        return None

    def reset_depth(self) -> None:
        """A KeyboardInterrupt inside a forward skips the post hooks; steps resynchronise."""
        self.depth = 0
        self.ordering = None
