"""Sees every `optimizer.step()` through the global optimizer step hooks, and every `zero_grad()`.

`zero_grad` has no hook, so `Optimizer.zero_grad` and `Module.zero_grad` are wrapped for the
run: the losses backwarded before it no longer contribute to the next step's gradients (a step
the script skipped, e.g. GradScaler on overflow or a guard against a NaN loss), so the step's
loss is what was backwarded after it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

if TYPE_CHECKING:
    from .modules import ModuleProbe
    from .shared import Handlers


class OptimizerProbe:
    def __init__(self, recorder: Handlers, modules: ModuleProbe | None = None) -> None:
        self.recorder = recorder
        self.modules = modules
        self.handles: list[Any] = []
        self.saved: list[tuple[type, Any]] = []

    def install(self) -> None:
        self.handles = [
            register_optimizer_step_pre_hook(self._pre),
            register_optimizer_step_post_hook(self._post),
        ]
        for cls in (torch.optim.Optimizer, torch.nn.Module):
            original = cls.__dict__["zero_grad"]
            self.saved.append((cls, original))
            cls.zero_grad = _wrap_zero_grad(original, self.recorder)  # type: ignore[method-assign]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        for cls, original in self.saved:
            cls.zero_grad = original  # type: ignore[method-assign]
        self.saved = []

    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # A wrapper optimizer (Lookahead-style) steps its inner one from inside its own step: that
        # inner step is part of the outer one, not another. (The recorder clears this stack on
        # backward(), so a step that raised cannot leave it stuck.)
        stepping = self.recorder.shared.stepping
        stepping.append(id(optimizer))
        if len(stepping) > 1:
            return None
        if self.modules is not None:
            self.modules.reset_depth()
        self.recorder.on_before_step(optimizer)
        return None

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        stepping = self.recorder.shared.stepping
        if stepping:
            stepping.pop()
        if not stepping:
            self.recorder.on_after_step(optimizer)
            if self.modules is not None and not self.modules.settled:
                roots = self.recorder.settled_roots()
                if roots is not None:
                    self.modules.settle(roots)


def _wrap_zero_grad(original: Any, recorder: Handlers) -> Any:
    @functools.wraps(original)
    def zero_grad(obj: Any, *args: Any, **kwargs: Any) -> Any:
        recorder.on_zero_grad()
        return original(obj, *args, **kwargs)

    return zero_grad
