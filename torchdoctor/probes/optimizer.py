"""Sees every `optimizer.step()` through the global optimizer step hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

if TYPE_CHECKING:
    from ..recorder import Recorder
    from .modules import ModuleProbe


class OptimizerProbe:
    def __init__(self, recorder: Recorder, modules: ModuleProbe | None = None) -> None:
        self.recorder = recorder
        self.modules = modules
        self.handles: list[Any] = []

    def install(self) -> None:
        self.handles = [
            register_optimizer_step_pre_hook(self._pre),
            register_optimizer_step_post_hook(self._post),
        ]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.modules is not None:
            self.modules.reset_depth()
        self.recorder.on_before_step(optimizer)
        return None

    def _post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.recorder.on_after_step(optimizer)
