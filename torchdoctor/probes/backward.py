"""Sees the tensor whose `.backward()` is called: in an unchanged script, that is the loss.

PyTorch has no global hook for this, so `torch.autograd.backward` (which
`Tensor.backward` calls) is wrapped for the duration of the run and restored after.

With mixed precision the script calls `scaler.scale(loss).backward()`: the tensor is the loss
times the scale (65536 and up; inf while the scaler calibrates). `GradScaler.scale` is wrapped
too, only to remember which loss each scaled tensor came from, so the loss recorded is the
script's own.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .shared import Handlers


class BackwardProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.original: Any = None
        self.original_scale: Any = None
        # (weak reference to the scaled tensor, the unscaled loss): the last scale() call only.
        self.scaled: tuple[weakref.ref, torch.Tensor] | None = None

    def install(self) -> None:
        original = torch.autograd.backward
        recorder = self.recorder
        shared = recorder.shared
        probe = self

        @functools.wraps(original)
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if shared.replaying:
                return original(tensors, *args, **kwargs)
            recorder.on_backward(probe.unscaled(tensors), _retains_graph(args, kwargs), tensors)
            # Module calls while backward runs (activation checkpointing re-running a block's
            # forward) are recomputation, not forwards of the script: the module probe skips them.
            shared.in_backward += 1
            try:
                result = original(tensors, *args, **kwargs)
            except BaseException:
                recorder.on_backward_failed()
                raise
            finally:
                shared.in_backward -= 1
            recorder.on_after_backward()  # the gradients exist: a loop without an optimizer steps here
            return result

        backward.__torchdoctor_original__ = original  # type: ignore[attr-defined]
        self.original = original
        torch.autograd.backward = backward
        self._install_scaler()

    def _install_scaler(self) -> None:
        scaler_cls = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler_cls is None:
            return
        original_scale = scaler_cls.scale
        probe = self

        @functools.wraps(original_scale)
        def scale(scaler: Any, outputs: Any) -> Any:
            scaled = original_scale(scaler, outputs)
            if scaled is not outputs and isinstance(scaled, torch.Tensor) and isinstance(outputs, torch.Tensor):
                try:
                    probe.scaled = (weakref.ref(scaled), outputs.detach())
                except TypeError:
                    probe.scaled = None
            return scaled

        original_update = scaler_cls.update
        recorder = self.recorder

        @functools.wraps(original_update)
        def update(scaler: Any, *args: Any, **kwargs: Any) -> Any:
            before = _scale_of(scaler)
            result = original_update(scaler, *args, **kwargs)
            if before is not None:
                after = _scale_of(scaler)
                if after is not None:
                    recorder.on_scaler_update(before, after)
            return result

        self.original_scale = (scaler_cls, original_scale, original_update)
        scaler_cls.scale = scale
        scaler_cls.update = update

    def unscaled(self, tensors: Any) -> Any:
        """The loss the script computed, when `tensors` is what GradScaler.scale made of it."""
        if self.scaled is None:
            return tensors
        try:
            ref, loss = self.scaled
            target = tensors[0] if isinstance(tensors, (list, tuple)) and len(tensors) == 1 else tensors
            if ref() is not target:
                return tensors
        except Exception as exc:  # contained: the user's backward() must run whatever happens here
            self.recorder.internal_error(f"GradScaler loss lookup: {type(exc).__name__}: {exc}", exc)
            return tensors
        self.scaled = None
        return loss

    def remove(self) -> None:
        if self.original is not None:
            torch.autograd.backward = self.original
            self.original = None
        if self.original_scale is not None:
            cls, original_scale, original_update = self.original_scale
            cls.scale = original_scale
            cls.update = original_update
            self.original_scale = None
        self.scaled = None


def _retains_graph(args: tuple, kwargs: dict) -> bool:
    """backward(tensors, grad_tensors, retain_graph, create_graph): create_graph retains it too."""
    try:
        retain = kwargs.get("retain_graph", args[1] if len(args) > 1 else None)
        create = kwargs.get("create_graph", args[2] if len(args) > 2 else False)
        return bool(retain if retain is not None else create)
    except Exception:
        return False


def _scale_of(scaler: Any) -> torch.Tensor | float | None:
    """The scaler's current scale, as a copy of its scale tensor where it has one: reading the
    value (`get_scale()`) would wait for the device, so the number rides along with the step's
    single read-back instead. Before the first `scale()` there is no tensor yet: the initial
    scale, a plain number."""
    try:
        if not scaler.is_enabled():
            return None
        tensor = scaler._get_scale_async() if hasattr(scaler, "_get_scale_async") else None
        if isinstance(tensor, torch.Tensor):
            return tensor.detach().reshape(-1)[:1].float().clone()
        return float(scaler.get_scale())
    except Exception:
        return None
