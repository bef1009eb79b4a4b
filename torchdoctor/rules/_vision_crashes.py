"""The crashes of detection, segmentation and GAN runs, named from the failing batch's facts
(probes/crash_targets.py): degenerate or mis-formatted boxes, detector targets missing or of the
wrong shape, box labels past the detector's classes, mask values past the segmenter's classes,
and a second backward through a generator's freed graph. Read by script_error through
`_failures.classify`.
"""

from __future__ import annotations

import re
from typing import Any

from ..findings import Fix
from ..timeline import Timeline

BOX_MESSAGE = re.compile(r"All bounding boxes should have positive height and width\. Found invalid box "
                         r"\[([^\]]*)\] for target at index (\d+)")
EMPTY_TARGET = "{'boxes': torch.zeros((0, 4)), 'labels': torch.zeros((0,), dtype=torch.int64)}"
DROP_DEGENERATE = ("b = target['boxes']\nkeep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])\n"
                   "target['boxes'], target['labels'] = b[keep], target['labels'][keep]")


def vision_kind(failure: dict[str, Any], message: str, info: dict[str, Any]) -> str | None:
    """The vision mistake this failure is, with its numbers put into `info`; None when it is none."""
    targets = failure.get("targets") or {}
    dense = failure.get("loss_call") or {}
    if (found := BOX_MESSAGE.search(message)) or "positive height and width" in message:
        info.update(_box_numbers(targets))
        if found:
            info["invalid_box"] = [float(v) for v in found.group(1).split(",") if v.strip()]
            info["target_index"] = int(found.group(2))
        return "degenerate_boxes"
    if "Expected input images to be of floating type" in message:
        info["image_dtypes"] = targets.get("image_dtypes") or re.findall(r"found type torch\.(\w+)", message)
        return "images_not_float"
    if "targets should not be none when in training mode" in message or "targets should be passed" in message:
        return "targets_missing"
    if "Expected target boxes to be" in message:
        info["bad_shapes"] = targets.get("bad_shapes") or []
        info["images"] = targets.get("images")
        return "target_boxes_shape"
    out_of_bounds = re.search(r"Target (-?\d+) is out of bounds", message)
    if out_of_bounds and targets.get("labels_range"):
        info["labels_range"] = targets["labels_range"]
        info["bad_target"] = int(out_of_bounds.group(1))
        info["classes"] = targets.get("num_classes") or dense.get("classes") or info.get("classes")
        info["detector"], info["num_classes_at"] = targets.get("detector"), targets.get("num_classes_at")
        return "detection_labels"
    if out_of_bounds and len(dense.get("target_shape") or []) >= 2:
        info.update(_mask_numbers(dense), bad_target=int(out_of_bounds.group(1)))
        return "mask_out_of_range"
    if "only batches of spatial targets supported" in message and dense:
        info.update(_mask_numbers(dense))
        return "mask_shape"
    if "backward through the graph a second time" in message:
        return "backward_twice"
    return None


DETECTORS = frozenset({"FasterRCNN", "MaskRCNN", "KeypointRCNN", "RetinaNet", "SSD", "FCOS"})


def refine(tl: Timeline, data: dict[str, Any]) -> None:
    """What only the run tells: a detector's eval() output (a list of detections) used as the dict
    of losses train() returns."""
    detector = next((m.label for m in tl.models if m.name in DETECTORS), None)
    if data.get("kind") == "other" and detector and "'list' object has no attribute" in (data.get("message") or ""):
        data.update(kind="detector_eval_output", detector=detector)


def _box_numbers(targets: dict[str, Any]) -> dict[str, Any]:
    keys = ("images", "boxes", "degenerate", "xywh_fits", "image_sizes", "x_min", "y_min", "x_max", "y_max",
            "degenerate_examples", "empty_images")
    return {k: targets[k] for k in keys if k in targets}


def _mask_numbers(dense: dict[str, Any]) -> dict[str, Any]:
    return {"classes": dense.get("classes"), "ignore_index": dense.get("ignore_index"),
            "mask_values": dense.get("target_values"), "distinct_values": dense.get("distinct_values"),
            "mask_shape": dense.get("target_shape"), "mask_dtype": dense.get("target_dtype"),
            "logits_shape": dense.get("input_shape")}


# -- explanations ------------------------------------------------------------------------------
def degenerate_boxes(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    bad, total = data.get("degenerate"), data.get("boxes")
    sizes = data.get("image_sizes") or []
    height, width = sizes[0] if sizes else ("H", "W")
    box = data.get("invalid_box")
    what = (f"{bad} of the batch's {total} boxes are degenerate (x2 <= x1 or y2 <= y1)" if total
            else "a box is degenerate (x2 <= x1 or y2 <= y1)")
    if box is not None:
        what += f", e.g. {box} in target {data.get('target_index')}"
    fixes: list[Fix] = []
    normalized = bool(total) and data.get("x_max") is not None and max(data["x_max"], data["y_max"]) <= 1.0 and (
        not sizes or min(min(s) for s in sizes) > 2)
    looks_xywh = bool(total) and data.get("xywh_fits") == total and (bad or 0) >= p["xywh_share"] * total
    if normalized:
        data["format"] = "normalized"
        what += "; every coordinate is within 0..1: they are fractions of the image, not pixels"
        fixes.append(Fix("scale_boxes", "Scale the boxes to pixels (torchvision expects absolute x1, y1, x2, y2).",
                         {"width": width, "height": height},
                         f"boxes = boxes * torch.tensor([{width}, {height}, {width}, {height}])   # W, H, W, H"))
    if looks_xywh:
        data["format"] = data.get("format") or "xywh"
        what += (f"; they look like (x, y, w, h): every x + w and y + h stays inside the "
                 f"{width}x{height} image, and 'x2' is often smaller than x1")
        fixes.append(Fix("convert_box_format",
                         "Convert the boxes to (x1, y1, x2, y2), what torchvision's detectors expect (COCO "
                         "annotations are (x, y, w, h); YOLO's are normalized (cx, cy, w, h): 'cxcywh').",
                         {"in_fmt": "xywh", "out_fmt": "xyxy"},
                         "boxes = torchvision.ops.box_convert(boxes, 'xywh', 'xyxy')   # in the Dataset, per image"))
    if not looks_xywh:
        fixes.append(Fix("drop_degenerate_boxes",
                         "Drop the boxes with no area where the dataset makes the targets (or clamp them to the "
                         "image with torchvision.ops.clip_boxes_to_image first, then drop the empty ones).",
                         {"degenerate": bad}, DROP_DEGENERATE))
    return what, fixes


def images_not_float(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    dtypes = data.get("image_dtypes") or []
    what = (f"the detector needs float images in [0, 1] and got {', '.join(dtypes) or 'integer'} images "
            "(torchvision.io.read_image and PIL-to-tensor give uint8 in 0..255)")
    return what, [Fix("scale_images", "Convert each image to float in [0, 1] where the dataset loads it.",
                      {"dtype": "float32", "scale": 1 / 255},
                      "image = torchvision.transforms.v2.functional.to_dtype(image, torch.float32, scale=True)\n"
                      "# or: image = image.float() / 255")]


def detector_eval_output(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    model = data.get("detector") or "model"
    what = (f"{model} was in eval() mode, where it returns a list of detections (one dict of boxes, labels and "
            "scores per image), not the dict of losses train() returns")
    return what, [Fix("train_mode_for_losses", f"Call {model}.train() before the training loop (and again after "
                      "each evaluation), and pass the targets.", {"model": model},
                      f"{model}.train()\nloss_dict = {model}(images, targets)\nloss = sum(loss_dict.values())")]


def targets_missing(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    what = ("the detector was called without targets while in train() mode; in train() it needs them and "
            "returns a dict of losses, in eval() it returns one dict of boxes, labels and scores per image")
    return what, [
        Fix("pass_targets", "Pass one target dict per image when training, and sum the losses it returns.", {},
            "model.train()\nloss_dict = model(images, targets)   # [{'boxes': FloatTensor[N, 4] (x1, y1, x2, y2), "
            "'labels': Int64Tensor[N]}, ...]\nloss = sum(loss_dict.values())"),
        Fix("eval_for_predictions", "To get predictions, switch to eval() first.", {},
            "model.eval()\nwith torch.no_grad():\n"
            "    detections = model(images)   # [{'boxes', 'labels', 'scores'}, ...]"),
    ]


def target_boxes_shape(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    bad = (data.get("bad_shapes") or [{}])[0]
    shape, index = bad.get("shape"), bad.get("index")
    if shape is not None:
        what = f"target {index}'s boxes have shape {shape}, not [N, 4]"
    else:
        what = f"target {index}'s boxes are a {bad.get('type', 'value')}, not a tensor of shape [N, 4]"
    if shape is not None and 0 in shape:
        what += ": an image without objects needs a (0, 4) tensor, not torch.zeros(0)"
        return what, [Fix("empty_target", "Give an image with no objects empty boxes of shape (0, 4) and empty "
                          "int64 labels.", {"index": index}, f"target = {EMPTY_TARGET}")]
    return what, [Fix("reshape_boxes", "Make each image's boxes a float tensor with one (x1, y1, x2, y2) row per "
                      f"object; an image with no objects is {EMPTY_TARGET}.", {"index": index},
                      "target['boxes'] = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)")]


def detection_labels(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    classes, (low, high) = data.get("classes"), data["labels_range"]
    need = high + 1
    at = f" ({data['num_classes_at']})" if data.get("num_classes_at") else ""
    labels = f"run {low}..{high}" if low != high else f"are {high}"
    what = (f"the box labels {labels} but the detector has {classes} classes{at}; torchvision's "
            f"num_classes counts the background (class 0), so labels 1..{classes - 1 if classes else 'C-1'} "
            f"are the objects and {high} needs num_classes={need}")
    data["num_classes_needed"] = need
    if (data.get("num_classes_at") or "").startswith("roi_heads."):
        snippet = ("from torchvision.models.detection.faster_rcnn import FastRCNNPredictor\n"
                   "in_features = model.roi_heads.box_predictor.cls_score.in_features\n"
                   f"model.roi_heads.box_predictor = FastRCNNPredictor(in_features, {need})")
    else:
        builder = {"SSD": "ssdlite320_mobilenet_v3_large", "RetinaNet": "retinanet_resnet50_fpn",
                   "FCOS": "fcos_resnet50_fpn"}.get(data.get("detector") or "", "fasterrcnn_mobilenet_v3_large_fpn")
        snippet = f"model = {builder}(weights=None, weights_backbone=None, num_classes={need})"
    fixes = [Fix("fix_num_classes", f"Build the detector with num_classes={need} (your {need - 1} object classes "
                 "plus the background).", {"num_classes": need}, snippet)]
    if low == 0:
        fixes.append(Fix("shift_labels", "Label 0 is the background to torchvision: number the objects from 1.",
                         {"shift": 1}, "target['labels'] = target['labels'] + 1"))
    return what, fixes


def mask_out_of_range(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    classes, ignore, values = data.get("classes"), data.get("ignore_index"), data.get("mask_values") or []
    outside = [v for v in values if (classes is not None and v >= classes or v < 0) and v != ignore]
    shown = ", ".join(map(str, values)) + (" ..." if (data.get("distinct_values") or 0) > len(values) else "")
    what = (f"the mask holds the values {{{shown}}} but the logits have {classes} classes (0..{(classes or 1) - 1}) "
            f"and the loss's ignore_index is {ignore}: {', '.join(map(str, outside)) or data.get('bad_target')} "
            "is no class")
    fixes = []
    if 255 in outside:
        fixes.append(Fix("set_ignore_index", "255 marks the border and void pixels (Pascal VOC's convention): tell "
                         "the loss to skip them.", {"ignore_index": 255},
                         "loss = F.cross_entropy(output['out'], mask, ignore_index=255)   "
                         "# or nn.CrossEntropyLoss(ignore_index=255)"))
    rest = [v for v in outside if v != 255]
    if rest:
        need = max(rest) + 1
        fixes.append(Fix("fix_num_classes", f"If there are {need} classes, give the model {need} outputs.",
                         {"num_classes": need}, f"model = deeplabv3_mobilenet_v3_large(weights=None, "
                         f"weights_backbone=None, num_classes={need})"))
        fixes.append(Fix("remap_labels", f"Or map the mask's values to 0..{(classes or 1) - 1} where the dataset "
                         "loads it.", {"values": values},
                         f"lut = torch.full((256,), 255, dtype=torch.long)   # 255: ignored\n"
                         f"lut[torch.tensor([...])] = torch.arange(...)     # your values -> 0..{(classes or 1) - 1}\n"
                         "mask = lut[mask]"))
    return what, fixes or [Fix("fix_labels", "Map the mask's values to 0..C-1 where the dataset loads it.", {}, None)]


def mask_shape(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    shape = data.get("mask_shape")
    what = (f"a dense cross-entropy needs a (N, H, W) mask of class indices and got shape {shape} "
            f"(logits {data.get('logits_shape')})")
    snippet = "mask = mask.squeeze(1).long()   # [N, 1, H, W] -> [N, H, W]" if shape and len(shape) == 4 and \
        shape[1] == 1 else "mask = mask.long()   # (N, H, W) class indices"
    return what, [Fix("fix_target_shape", "Give the loss one class index per pixel.", {"target_shape": shape},
                      snippet)]


def backward_twice(tl: Timeline, data: dict[str, Any], p: dict[str, float]) -> tuple[str, list[Fix]]:
    labels = [m.label for m in tl.models]
    if len(labels) < 2 and not (tl.roles.generator and tl.roles.discriminator):
        return ("a backward() went through a graph an earlier backward() had already freed",
                [Fix("recompute_per_step", "A tensor computed once (before the loop, or carried over from the last "
                     "step, like an RNN's hidden state) is part of two backward() calls: compute it inside the "
                     "step, or detach() what is carried over. Use retain_graph=True only when one graph really "
                     "needs two backwards.", {}, "hidden = hidden.detach()   # what is carried into the next step")])
    generator, discriminator = _gan_roles(tl, labels)
    data.update(generator=generator, discriminator=discriminator, models=labels)
    what = (f"the discriminator's loss was computed on the generator's output without detach(): "
            f"{discriminator}'s backward() freed {generator}'s graph, and the generator's backward() then went "
            "through it again")
    return what, [Fix("detach_fake", f"Score the generated batch detached in the discriminator's step, so its "
                      f"backward() stops at {generator}'s output; keep it attached for the generator's step.",
                      {"generator": generator, "discriminator": discriminator},
                      f"loss_fake = criterion({discriminator}(fake.detach()), fake_label)   # discriminator step\n"
                      f"loss_g = criterion({discriminator}(fake), real_label)               # generator step")]


def _gan_roles(tl: Timeline, labels: list[str]) -> tuple[str, str]:
    """The generator's and the discriminator's names: from the roles seen, else from the names."""
    generator, discriminator = tl.roles.generator, tl.roles.discriminator
    for label in labels:
        low = label.lower()
        if discriminator is None and ("disc" in low or "critic" in low or low.endswith("d")):
            discriminator = label
        elif generator is None and ("gen" in low or low.endswith("g")):
            generator = label
    return generator or "the generator", discriminator or "the discriminator"


VISION_EXPLAIN = {
    "degenerate_boxes": degenerate_boxes, "images_not_float": images_not_float, "targets_missing": targets_missing,
    "target_boxes_shape": target_boxes_shape,
    "detection_labels": detection_labels, "mask_out_of_range": mask_out_of_range, "mask_shape": mask_shape,
    "backward_twice": backward_twice, "detector_eval_output": detector_eval_output,
}
