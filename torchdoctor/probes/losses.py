"""Sees every loss PyTorch computes: the functional losses (`F.cross_entropy`, `F.mse_loss`, ...)
are wrapped for the run, and the `nn` loss modules call them, so both ways of writing a loss
are seen once each.

This is how validation becomes visible without a code change: a loss computed while no
gradient is recorded (or with the model in `eval()`) belongs to an evaluation pass.
"""

from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F

from . import tracing

if TYPE_CHECKING:
    from .shared import Handlers

LOSS_FUNCTIONS = (
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "poisson_nll_loss",
    "gaussian_nll_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "multi_margin_loss",
    "multilabel_margin_loss", "hinge_embedding_loss", "cosine_embedding_loss", "margin_ranking_loss",
    "triplet_margin_loss", "triplet_margin_with_distance_loss", "ctc_loss", "linear_cross_entropy",
)


class LossProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.saved: dict[str, Any] = {}
        self.depth = 0  # a loss implemented with another wrapped loss is one loss

    def install(self) -> None:
        for name in LOSS_FUNCTIONS:
            original = getattr(F, name, None)
            if original is None:
                continue
            self.saved[name] = original
            setattr(F, name, self._wrap(name, original))
        self.recorder.shared.loss_functions = dict(self.saved)

    def remove(self) -> None:
        for name, original in self.saved.items():
            setattr(F, name, original)
        self.saved = {}

    def _observe(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        rec = self.recorder
        try:
            if not rec.shared.replaying and not rec.shared.in_backward and not tracing():
                rec.on_loss(name, args, kwargs, out)
        except Exception as exc:  # never let our bookkeeping fail the user's loss
            rec.internal_error(f"loss probe: {type(exc).__name__}: {exc}", exc)

    def _failed(self, name: str, args: tuple) -> None:
        try:
            self.recorder.on_loss_failed(name, args)
        except Exception as exc:
            self.recorder.internal_error(f"loss probe: {type(exc).__name__}: {exc}", exc)

    def _wrap(self, name: str, original: Any) -> Any:
        probe = self
        observe = self._observe  # closure variables only: the wrapper runs with F's globals (below)
        failed = self._failed

        @functools.wraps(original)
        def loss(*args: Any, **kwargs: Any) -> Any:
            probe.depth += 1
            try:
                out = original(*args, **kwargs)
            except BaseException:
                if probe.depth == 1:
                    failed(name, args)
                raise
            finally:
                probe.depth -= 1
            if probe.depth == 0:
                observe(name, args, kwargs, out)
            return out

        # TorchScript compiles a scripted module's F.cross_entropy from source: it finds the
        # original's source through __wrapped__, and resolves its names in the wrapper's globals.
        # Giving the wrapper torch.nn.functional's globals makes it compile exactly the original.
        scriptable = types.FunctionType(loss.__code__, vars(F), loss.__name__, loss.__defaults__, loss.__closure__)
        functools.update_wrapper(scriptable, original)
        scriptable.__torchdoctor_original__ = original  # type: ignore[attr-defined]
        return scriptable
