"""Discovers models and loss modules through PyTorch's global module forward hooks.

Only forward hooks are used: global *full backward* hooks break in-place ReLU.
A module called while no other module is running is a root: a model, or a loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.modules.module as module_globals
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from . import tracing

if TYPE_CHECKING:
    from ..recorder import Recorder, RootState


class ModuleProbe:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.depth = 0
        self.ordering: RootState | None = None
        self.handles: list[Any] = []

    def install(self) -> None:
        self.handles = [
            register_module_forward_pre_hook(self._pre),
            # with_kwargs: the replay needs the keyword arguments too. Nothing is attached to the
            # user's modules themselves, so deepcopy(model) and torch.save(model) stay unaffected.
            register_module_forward_hook(self._post, with_kwargs=True, always_call=True),
        ]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
            # PyTorch's handle forgets the with_kwargs flag it registered: drop it ourselves.
            module_globals._global_forward_hooks_with_kwargs.pop(h.id, None)
        self.handles = []

    def _pre(self, module: torch.nn.Module, args: tuple) -> None:
        rec = self.recorder
        if rec.replaying or rec.in_backward or tracing():
            # Forwards re-run inside backward() (activation checkpointing) are not new calls.
            return None
        try:
            if self.depth == 0:
                state = rec.on_root_call(module, args)
                if state is not None and not state.order_done:
                    self.ordering = state
            else:
                if self.ordering is not None:
                    self.ordering.forward_order.append(id(module))
                if rec.memory.capture is not None:
                    rec.memory.capture.enter(module, args)
        except Exception as exc:  # never let our bookkeeping fail the user's forward
            rec.internal_error(f"module pre-hook: {type(exc).__name__}: {exc}", exc)
        self.depth += 1
        return None

    def _post(self, module: torch.nn.Module, args: tuple, *rest: Any) -> None:
        # (kwargs, output) normally; just (output) when PyTorch calls always_call hooks after the
        # forward raised, where it ignores with_kwargs.
        rec = self.recorder
        if rec.replaying or rec.in_backward or tracing():
            return None
        self.depth = max(0, self.depth - 1)
        failed = len(rest) != 2
        if failed:
            rec.on_module_failed(module, args)
        if self.depth == 0:
            self.ordering = None
            rec.on_root_exit(module, failed)
            if not failed:
                rec.on_root_done(module, args, rest[0], rest[1])
        elif rec.memory.capture is not None:
            rec.memory.capture.exit()
        return None

    def reset_depth(self) -> None:
        """A KeyboardInterrupt inside a forward skips the post hooks; steps resynchronise."""
        self.depth = 0
        self.ordering = None
        if self.recorder.memory.capture is not None:
            self.recorder.memory.end_forward()
