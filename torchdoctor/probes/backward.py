"""Sees the tensor whose `.backward()` is called: in an unchanged script, that is the loss.

PyTorch has no global hook for this, so `torch.autograd.backward` (which
`Tensor.backward` calls) is wrapped for the duration of the run and restored after.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..recorder import Recorder


class BackwardProbe:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.original: Any = None

    def install(self) -> None:
        original = torch.autograd.backward
        recorder = self.recorder

        @functools.wraps(original)
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if not recorder.replaying:
                recorder.on_backward(tensors)
            return original(tensors, *args, **kwargs)

        backward.__torchdoctor_original__ = original  # type: ignore[attr-defined]
        self.original = original
        torch.autograd.backward = backward

    def remove(self) -> None:
        if self.original is not None:
            torch.autograd.backward = self.original
            self.original = None
