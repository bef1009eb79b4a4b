"""Sees each `clip_grad_norm_` call, and whether the gradients it clips are still scaled by a GradScaler.

With mixed precision the gradients after `scaler.scale(loss).backward()` are the true ones times
the loss scale (65536 to start). `scaler.unscale_(optimizer)` divides them back; a clip before it
measures the scaled norm and shrinks every gradient by about the scale. PyTorch keeps, per
optimizer, whether it was unscaled this step (`scaler._per_optimizer_states[id(opt)]["stage"]`);
a clip is "scaled" when a live, enabled scaler has scaled a loss and no optimizer of it is
unscaled yet.

`torch.nn.utils.clip_grad_norm_` (and the deprecated `clip_grad_norm`, which calls it) is wrapped
for the run and restored after; `GradScaler.__init__` is wrapped to know the scalers (weakly).
The check reads Python attributes only; the scale and the norm are tensors handed to the
recorder, which reads them with the step's read-back. A clip of a scaler built before the run
was watched is not judged.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .shared import Handlers

CLIP_NAMES = ("clip_grad_norm_",)


class ClipProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.scalers: weakref.WeakSet = weakref.WeakSet()
        self.saved: list[tuple[Any, str, Any]] = []  # (owner, attribute, original)
        self.depth = 0

    def install(self) -> None:
        scaler_cls = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler_cls is None:
            return
        init = scaler_cls.__dict__["__init__"]
        probe = self

        @functools.wraps(init)
        def scaler_init(scaler: Any, *args: Any, **kwargs: Any) -> None:
            init(scaler, *args, **kwargs)
            try:
                probe.scalers.add(scaler)
            except TypeError:
                pass

        self._patch(scaler_cls, "__init__", scaler_init)
        clip_module = torch.nn.utils.clip_grad
        original = clip_module.clip_grad_norm_
        wrapped = self._wrap(original)
        for owner in (clip_module, torch.nn.utils):
            if getattr(owner, "clip_grad_norm_", None) is original:
                self._patch(owner, "clip_grad_norm_", wrapped)

    def remove(self) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)
        self.saved = []
        self.scalers = weakref.WeakSet()

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def _wrap(self, original: Any) -> Any:
        probe = self

        @functools.wraps(original)
        def clip_grad_norm_(parameters: Any, *args: Any, **kwargs: Any) -> Any:
            if probe.depth or probe.recorder.shared.replaying:
                return original(parameters, *args, **kwargs)
            if not isinstance(parameters, torch.Tensor):
                parameters = list(parameters)  # a generator is read once: by the clip, not by us
            scale = probe._scaled_by()
            probe.depth += 1
            try:
                norm = original(parameters, *args, **kwargs)
            finally:
                probe.depth -= 1
            probe._note(scale, norm, kwargs.get("max_norm", args[0] if args else None))
            return norm

        clip_grad_norm_.__torchdoctor_original__ = original  # type: ignore[attr-defined]
        return clip_grad_norm_

    def _scaled_by(self) -> Any:
        """The scale tensor of a scaler whose gradients are still scaled, None if none is, or
        False when no scaler is in use at all."""
        try:
            from torch.amp.grad_scaler import OptState
        except ImportError:
            return None
        found: Any = False
        for scaler in list(self.scalers):
            try:
                if not scaler.is_enabled() or getattr(scaler, "_scale", None) is None:
                    continue
                states = getattr(scaler, "_per_optimizer_states", {})
                if any(s.get("stage") is OptState.UNSCALED for s in states.values()):
                    return None
                found = scaler._scale
            except Exception:
                continue
        return found

    def _note(self, scale: Any, norm: Any, max_norm: Any) -> None:
        if scale is False:
            return  # no GradScaler: a plain clip, nothing to judge
        try:
            self.recorder.on_clip(scale, norm, max_norm)
        except Exception as exc:  # never let our bookkeeping fail the user's clip
            self.recorder.internal_error(f"clip probe: {type(exc).__name__}: {exc}", exc)
