"""What the failing batch held, for vision runs: read from the exception's traceback when the script
dies, never on the hot path.

A detector is called as `model(images, targets)` with a list of image tensors and a list of
`{"boxes", "labels"}` dicts; the outermost model call on the traceback still holds them as the
script passed them (torchvision rescales its own copies). A dense loss (`F.cross_entropy` on a
(N, H, W) mask) is read from its own frame, which also holds the `ignore_index` it was given.
Facts only, in plain values: naming the mistake is the rules' job (rules/_vision_crashes.py).
"""

from __future__ import annotations

from types import FrameType
from typing import Any

import torch

MAX_TARGETS = 512  # target dicts read
MAX_EXAMPLES = 3  # degenerate boxes quoted
MAX_VALUES = 10  # distinct mask values kept
MAX_UNIQUE_NUMEL = 50_000_000  # a larger mask is not scanned for its values
DENSE_LOSSES = ("cross_entropy", "nll_loss")


def failure_frames(exc: BaseException) -> list[FrameType]:
    """The traceback's frames, outermost first."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def batch_facts(exc: BaseException) -> dict[str, Any]:
    """Detection targets and a dense loss's target, as found on the traceback ({} when neither)."""
    frames = failure_frames(exc)
    facts: dict[str, Any] = {}
    called = _model_call(frames)
    # After a CUDA device-side assert no tensor can be read (RuntimeError): what was read stays.
    if called is not None:
        model, images, targets = called
        facts["targets"] = detector_facts(model)
        try:
            facts["targets"].update(target_facts(targets, images))
        except RuntimeError:
            pass
    try:
        dense = _dense_loss(frames)
    except RuntimeError:
        dense = None
    if dense is not None:
        facts["loss_call"] = dense
    return facts


def _model_call(frames: list[FrameType]) -> tuple[torch.nn.Module, Any, list[dict]] | None:
    """(model, images, targets) of the outermost module call given list-of-dict targets with boxes."""
    for frame in frames:
        local = frame.f_locals
        if not isinstance(local.get("self"), torch.nn.Module):
            continue
        values = list(local.get("args") or ()) if isinstance(local.get("args"), tuple) else []
        if isinstance(local.get("kwargs"), dict):
            values += list(local["kwargs"].values())
        values += [v for k, v in local.items() if k not in ("self", "args", "kwargs")]
        targets = next((v for v in values if _is_box_targets(v)), None)
        if targets is not None:
            images = next((v for v in values if _image_sizes(v)), None)
            return local["self"], images, targets
    return None


# Where torchvision's detectors keep their class count (background included).
CLASS_COUNTS = (("roi_heads.box_predictor.cls_score", "out_features"), ("head.classification_head", "num_classes"),
                ("head.classification_head", "num_columns"))  # Faster R-CNN, RetinaNet/FCOS, SSD


def detector_facts(model: torch.nn.Module) -> dict[str, Any]:
    """The detector's class and its class count, where torchvision keeps it."""
    facts: dict[str, Any] = {"detector": type(model).__name__}
    for path, attribute in CLASS_COUNTS:
        owner: Any = model
        for part in path.split("."):
            owner = getattr(owner, part, None)
        value = getattr(owner, attribute, None)
        if isinstance(value, int):
            facts.update(num_classes=value, num_classes_at=f"{path}.{attribute}")
            break
    return facts


def _is_box_targets(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(t, dict) for t in value) and "boxes" in value[0])


def _image_sizes(images: Any) -> list[list[int]]:
    """[H, W] of each image: a list of (C, H, W) tensors, a (N, C, H, W) batch or an ImageList."""
    sizes = getattr(images, "image_sizes", None)
    if isinstance(sizes, list):
        return [list(s) for s in sizes]
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [list(images.shape[-2:])] * images.shape[0]
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, torch.Tensor) and i.dim() >= 2
                                                            for i in images):
        return [list(i.shape[-2:]) for i in images]
    return []


def _image_dtypes(images: Any) -> list[str]:
    tensors = [images] if isinstance(images, torch.Tensor) else images if isinstance(images, (list, tuple)) else []
    return sorted({str(t.dtype).replace("torch.", "") for t in tensors if isinstance(t, torch.Tensor)})


def target_facts(targets: list[dict], images: Any = None) -> dict[str, Any]:
    """Counts and ranges of a batch's boxes: how many are degenerate (x2 <= x1 or y2 <= y1), how
    many would fit in their image read as (x, y, w, h), the coordinates' extent, the labels' range."""
    sizes = _image_sizes(images)
    facts: dict[str, Any] = {"images": len(targets), "boxes": 0, "degenerate": 0, "xywh_fits": 0,
                             "empty_images": 0, "bad_shapes": [], "degenerate_examples": []}
    if sizes:
        facts["image_sizes"] = [list(s) for s in dict.fromkeys(tuple(s) for s in sizes)][:4]
    dtypes = _image_dtypes(images)
    if dtypes:
        facts["image_dtypes"] = dtypes
    low = high = None
    labels: list[int] = []
    for i, target in enumerate(targets[:MAX_TARGETS]):
        boxes = target.get("boxes")
        if not isinstance(boxes, torch.Tensor):
            facts["bad_shapes"].append({"index": i, "type": type(boxes).__name__})
            continue
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            facts["bad_shapes"].append({"index": i, "shape": list(boxes.shape),
                                        "dtype": str(boxes.dtype).replace("torch.", "")})
            continue
        facts["boxes"] += boxes.shape[0]
        if boxes.shape[0] == 0:
            facts["empty_images"] += 1
            continue
        b = boxes.detach().to("cpu", torch.float64)
        bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        facts["degenerate"] += int(bad.sum())
        for row in b[bad][:MAX_EXAMPLES - len(facts["degenerate_examples"])].tolist():
            facts["degenerate_examples"].append({"index": i, "box": [round(v, 2) for v in row]})
        if i < len(sizes):
            h, w = sizes[i]
            fits = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 0] + b[:, 2] <= w + 0.5) & (b[:, 1] + b[:, 3] <= h + 0.5)
            facts["xywh_fits"] += int(fits.sum())
        lo, hi = b.min(0).values.tolist(), b.max(0).values.tolist()
        low = lo if low is None else [min(a, c) for a, c in zip(low, lo, strict=True)]
        high = hi if high is None else [max(a, c) for a, c in zip(high, hi, strict=True)]
        found = target.get("labels")
        if isinstance(found, torch.Tensor) and found.numel() and not found.is_floating_point():
            labels += [int(found.min()), int(found.max())]
    if low is not None and high is not None:
        facts.update(x_min=round(min(low[0], low[2]), 2), y_min=round(min(low[1], low[3]), 2),
                     x_max=round(max(high[0], high[2]), 2), y_max=round(max(high[1], high[3]), 2))
    if labels:
        facts["labels_range"] = [min(labels), max(labels)]
    return facts


def _dense_loss(frames: list[FrameType]) -> dict[str, Any] | None:
    """The innermost torch.nn.functional cross_entropy / nll_loss frame: its class count, its
    ignore_index and its target's dtype, shape and distinct values."""
    for frame in reversed(frames):
        code = frame.f_code
        if code.co_name not in DENSE_LOSSES or not code.co_filename.endswith("functional.py"):
            continue
        local = frame.f_locals
        logits, target = local.get("input"), local.get("target")
        if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
            return None
        facts: dict[str, Any] = {"function": code.co_name, "ignore_index": local.get("ignore_index"),
                                 "input_shape": list(logits.shape), "target_shape": list(target.shape),
                                 "target_dtype": str(target.dtype).replace("torch.", "")}
        if logits.dim() >= 2:
            facts["classes"] = logits.shape[1]
        facts.update(_values(target))
        return facts
    return None


def _values(target: torch.Tensor) -> dict[str, Any]:
    """A few distinct values of an integer target (the smallest and the largest when there are many)."""
    try:
        if target.is_floating_point() or target.numel() == 0 or target.numel() > MAX_UNIQUE_NUMEL:
            return {}
        values = torch.unique(target.detach().cpu()).tolist()
    except Exception:  # after a CUDA device-side assert nothing can be read
        return {}
    half = MAX_VALUES // 2
    shown = values if len(values) <= MAX_VALUES else values[:half] + values[-half:]
    return {"target_values": shown, "distinct_values": len(values)}
