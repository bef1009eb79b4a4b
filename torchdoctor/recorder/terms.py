"""A model that computes its own losses (a torchvision detector in train mode returns
`{"loss_classifier": ..., "loss_box_reg": ...}`, the script sums them): each part is its own
series, read with the step's one read-back, and the losses the model called inside its forward
are its parts, not the script's training loss (their chance level says nothing about the sum)."""

from __future__ import annotations

from typing import Any

import torch

from ..timeline import Timeline
from .readback import ReadbackQueue

# Where torchvision's detectors compute each part: the head a NaN in that part points to.
TORCHVISION_HEADS = {
    "loss_classifier": "roi_heads", "loss_box_reg": "roi_heads", "loss_mask": "roi_heads",
    "loss_keypoint": "roi_heads", "loss_objectness": "rpn", "loss_rpn_box_reg": "rpn",
    "classification": "head.classification_head", "bbox_regression": "head.regression_head",
    "bbox_ctrness": "head.regression_head",
}
MAX_TERMS = 16


def loss_parts(output: Any) -> dict[str, torch.Tensor] | None:
    """The output as loss parts: a dict whose every value is a scalar floating tensor that
    requires a gradient; None for anything else (a segmentation model's {"out", "aux"})."""
    if not isinstance(output, dict) or not output or len(output) > MAX_TERMS:
        return None
    parts = {}
    for name, value in output.items():
        if not (isinstance(name, str) and isinstance(value, torch.Tensor) and value.numel() == 1
                and value.is_floating_point() and value.requires_grad):
            return None
        parts[name] = value
    return parts


def targets_kind(args: tuple, kwargs: dict) -> str | None:
    """"boxes" for a detector's list of target dicts, "masks" for masks alone, else None."""
    targets = kwargs.get("targets", args[1] if len(args) > 1 else None)
    if not isinstance(targets, (list, tuple)) or not targets or not isinstance(targets[0], dict):
        return None
    keys = set(targets[0])
    if "boxes" in keys:
        return "boxes"
    return "masks" if "masks" in keys else None


class LossParts:
    def __init__(self, timeline: Timeline, queue: ReadbackQueue) -> None:
        self.timeline = timeline
        self.queue = queue
        self.pending: dict[str, torch.Tensor] = {}  # summed over the forwards since the last step
        self.model_computes_loss = False  # a model returned its losses: its inner loss calls are parts

    def on_training_output(self, output: Any, module_types: dict[str, str]) -> bool:
        """A training forward returned: keep its loss parts, if it returned any."""
        parts = loss_parts(output)
        if parts is None:
            return False
        self.model_computes_loss = True
        for name, value in parts.items():
            if name not in self.timeline.loss_terms:
                head = TORCHVISION_HEADS.get(name)
                self.timeline.loss_terms[name] = head if head is not None and head in module_types else None
            value = value.detach()
            old = self.pending.get(name)
            self.pending[name] = value if old is None else old + value
        return True

    def queue_terms(self, holder: dict[str, Any]) -> None:
        """The parts ride along with the step's read-back, into holder["terms"]."""
        if not self.pending:
            return
        names = list(self.pending)
        values = torch.stack([self.pending[n].reshape(()).float() for n in names])
        self.pending = {}

        def decode(v: list[float]) -> None:
            holder["terms"] = dict(zip(names, v, strict=True))

        self.queue.add(values, decode)

    def clear(self) -> None:
        self.pending = {}
