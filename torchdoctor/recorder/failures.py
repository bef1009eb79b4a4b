"""How the run went wrong: where an exception left it, the exception the script died of, and where
a non-finite loss came from (the batch, a module, or the loss itself, found by replaying the
forward). Facts only: naming the mistake is the rules' job (rules/_failures.py)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..probes.crash import exception_facts, loss_facts, module_facts
from ..probes.crash_targets import batch_facts
from ..probes.localize import find_bad_input, nonfinite_kind, replay_forward
from ..probes.shared import Shared
from ..timeline import Event, Timeline
from .loaders import Loaders
from .models import Models
from .state import Latest

# (latest call, latest loss call, latest batch) when a loss was backwarded, or "current" for now
Context = Any


class Failures:
    def __init__(self, timeline: Timeline, shared: Shared, latest: Latest, models: Models, loaders: Loaders) -> None:
        self.timeline = timeline
        self.shared = shared
        self.latest = latest
        self.models = models
        self.loaders = loaders
        self.nonfinite_loss_seen = False
        self.nonfinite_grad_seen = False

    def context(self) -> tuple[Any, Any, Any]:
        """What a loss backwarded now came from, kept until its step's read-back."""
        return self.latest.call, self.latest.loss_call, self.loaders.last_batch

    # -- where an exception left ------------------------------------------------------
    def on_backward_failed(self) -> None:
        self.shared.failed_in = {"phase": "backward", "module": None}

    def on_loss_failed(self, name: str, args: tuple) -> None:
        """A loss function raised: note it with the shapes it was given (and what they broadcast to)."""
        shapes = [list(a.shape) for a in args[:2] if isinstance(a, torch.Tensor)]
        info: dict[str, Any] = {"phase": "loss", "module": None, "loss": name, "shapes": shapes, **loss_facts(args)}
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            try:
                info["broadcast_shape"] = list(torch.broadcast_shapes(*[torch.Size(x) for x in shapes]))
            except RuntimeError:
                pass
        self.shared.failed_in = info

    def on_module_failed(self, module: torch.nn.Module, args: tuple = ()) -> None:
        """A module's forward raised; the first to say so is where it happened."""
        if self.shared.failed_in is None:
            self.shared.failed_in = {"phase": "forward", "module": self.models.name_of(module),
                                     **module_facts(module, args)}
            sites = self.shared.layer_sites
            site = sites.get(module) if sites is not None else None
            if site is not None:  # where the script built the layer that raised: its fix's line
                self.timeline.sources["failed_layer"] = site

    def on_script_failed(self, exc: BaseException, step: int, epoch: int | None) -> None:
        """The run died: what was raised, and where; for a vision run, what the failing batch's
        boxes or mask held (read here, from the traceback, never during the run)."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return
        where = self.shared.failed_in or {
            "phase": "optimizer step" if self.shared.stepping else "code outside the model", "module": None}
        event = Event("script_failed", step, epoch, {**exception_facts(exc), **where})
        self.timeline.events.append(event)
        # Recorded before the batch is read: if reading it fails, the failure is still reported.
        event.data.update(batch_facts(exc))

    # -- non-finite losses ---------------------------------------------------------------
    def record_nonfinite_loss(self, value: float, step: int, epoch: int | None, context: Context = "current") -> None:
        """`context`: "current", or (call, loss call, batch) as they were when the bad loss was
        backwarded, or None when they are no longer held."""
        self.nonfinite_loss_seen = True
        data: dict[str, Any] = {"value": value}
        if context is None:
            data.update(origin=None, detail="the loss of a micro-batch in the middle of a gradient "
                        "accumulation went non-finite; its batch is no longer held, so it was not replayed")
        else:
            data.update(self._locate(None if context == "current" else context))
        self.timeline.events.append(Event("nonfinite_loss", step, epoch, data))

    def _locate(self, context: tuple[Any, Any, Any] | None = None) -> dict[str, Any]:
        last_call, last_loss_call, last_batch = context or self.context()
        if last_call is None:
            return {"origin": None, "detail": "no model forward was observed"}
        module, args, kwargs = last_call
        batch: list[tuple[str, Any]] = [("model input", args[:1] if args else ())]
        batch.append(("model input (other arguments)", (args[1:], kwargs)))
        if last_loss_call is not None:
            batch.append(("loss target", last_loss_call[0]))
        if last_batch is not None:
            batch.append(("data loader batch", last_batch))
        bad = find_bad_input(batch)
        if bad is not None:
            return {"origin": "input", "detail": f"the {bad['tensor']} held NaN/Inf", "input": bad}
        self.shared.replaying = True
        try:
            found = replay_forward(module, args, kwargs, self.models.name_of)
        except Exception as exc:
            return {"origin": None, "detail": f"could not replay the forward: {type(exc).__name__}: {exc}"}
        finally:
            self.shared.replaying = False
        if "origin" not in found:
            found.update(origin="loss", detail="the model's output was finite; the loss computation made it non-finite")
        found["module_type"] = self.timeline.module_type(found["origin"]) if found["origin"] else None
        return found

    def catch_unstepped(self, pending: list[torch.Tensor], first_context: Any, step: int,
                        epoch: int | None) -> None:
        """A non-finite loss the script saw but never stepped on (e.g. it stopped on NaN)."""
        if self.nonfinite_loss_seen:
            return
        candidates: list[tuple[torch.Tensor, Any]] = [(t, "current") for t in pending]
        if len(candidates) > 1 and first_context is not None:
            candidates[0] = (candidates[0][0], first_context)
        if self.latest.loss_call is not None and self.latest.loss_call[1] is not None:
            candidates.append((self.latest.loss_call[1], "current"))
        for t, context in candidates:
            kind = nonfinite_kind(t)
            if kind is not None:
                self.record_nonfinite_loss(float(t.float().reshape(-1)[0]), step, epoch, context)
                return
        if self.latest.output is not None and nonfinite_kind(self.latest.output) in ("nan", "inf"):
            self.record_nonfinite_loss(math.nan, step, epoch)

    def note_nonfinite_grads(self, names: list[str], step: int, epoch: int | None, loss_was_bad: bool) -> None:
        if not loss_was_bad and not self.nonfinite_grad_seen and not self.nonfinite_loss_seen:
            self.nonfinite_grad_seen = True
            self.timeline.events.append(Event("nonfinite_gradient", step, epoch, {"params": names}))
