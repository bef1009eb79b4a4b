"""script_error: the script died of an exception; the classic ones are explained with their fix.

Under torchrun, which rank's failure is to blame and the script_errors made for ranks that died,
exited or stayed silent are decided in ranks.py (rank 0 calls it when it merges the ranks' reports).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import Finding, Fix, Severity
from ..timeline import Timeline
from ._failures import classify, failures, oom_facts
from ._fixes import at_source, located_snippet
from ._vision_crashes import VISION_EXPLAIN, refine
from .base import Param, finding_for, rule

PARAMS = {"xywh_share": Param(0.1, "boxes read as (x, y, w, h) when all fit in their image that way and at least "
                                   "this share of them are degenerate as (x1, y1, x2, y2)")}


@rule("script_error", Severity.CRITICAL, "The script raised; the classic errors are explained with their fix",
      PARAMS)
def script_error(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the script ended with an uncaught exception (out-of-memory has its own
    finding, `out_of_memory`; Ctrl-C and `sys.exit` are not errors). Your traceback is printed
    as Python prints it; the finding adds where in the model it happened (the innermost module
    whose forward raised, or the loss) and the shapes, dtypes and devices it was given.

    The classic ones are explained with the fix and its numbers: a conv stack fed into a
    `Linear` whose `in_features` does not match (add `nn.Flatten()` or `nn.AdaptiveAvgPool2d`,
    and the `in_features` it needs), a conv whose `in_channels` does not match the images, float64
    inputs (NumPy's default) into float32 weights, tensors on different devices, class indices
    outside the model's classes (labels 1..C instead of 0..C-1), a target of the wrong dtype or
    shape for its loss, and an embedding index past the vocabulary.

    Vision runs too, from what the failing batch held: a detector's degenerate boxes (how many of
    the batch's, and whether they are (x, y, w, h) or normalized: `box_convert`, scaling, or dropping
    them), targets missing in `train()` or of the wrong shape (an image without objects is
    `torch.zeros((0, 4))`), box labels past `num_classes` (which counts the background), a mask
    whose values pass the class count (its values, the class count and the `ignore_index`: 255 is
    VOC's border), and a GAN whose discriminator's loss was computed on the generator's output
    without `detach()` (the second backward through a freed graph).

    Under torchrun, rank 0 gathers every rank's script_error (evidence.rank says whose). A rank
    that failed on its own opens its title with its rank; a rank that only lost its peer in a
    collective points at that rank; a rank that died without reporting (killed, or a crash in
    native code), exited non-zero without an exception, or never reported gets a script_error
    made at gather time (evidence.kind `rank_died`, `rank_exit`, `rank_silent`).
    """
    events = [e for e in failures(tl) if oom_facts(e.data) is None]
    if not events:
        return
    event = events[0]
    data = classify(event.data)
    refine(tl, data)
    mistake = data.get("kind", "other")
    if mistake in VISION_EXPLAIN:
        what, fixes = VISION_EXPLAIN[mistake](tl, data, p)
    else:
        what, fixes = EXPLAIN.get(mistake, _other)(tl, data)
    where = data.get("module")
    kind = data.get("module_type")
    shown = f"{where} ({kind})" if where and kind and kind != where else tl.label(where) if where else ""
    place = f"in the forward of {shown}" if where else (
        f"in the loss {data['loss']}" if data.get("loss") else f"in the {data.get('phase') or 'script'}")
    yield finding_for(
        "script_error",
        f"The script died at step {event.step} {place}: {what}",
        step=event.step,
        epoch=event.epoch,
        where=where,
        evidence={k: v for k, v in data.items() if k not in ("phase",) and v not in (None, [], {})}
        | {"phase": data.get("phase")},
        fixes=fixes,
    )


def _shape(data: dict[str, Any], i: int = 0) -> list[int] | None:
    inputs = data.get("inputs") or []
    return inputs[i]["shape"] if len(inputs) > i else None


def _linear(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    shape, features, wanted = _shape(data), data["features"], data.get("in_features")
    out = data.get("out_features", "out")
    fixes = []
    if shape is not None and len(shape) > 2:
        what = (f"a Linear(in_features={wanted}) got a {len(shape)}-d input {shape}: the feature maps were "
                f"not flattened (flattened, they are {features} features)")
        fixes.append(Fix("add_flatten",
                         f"Flatten the feature maps before the Linear and give it in_features={features}.",
                         {"in_features": features, "input_shape": shape},
                         f"nn.Flatten(),                  # [N, {', '.join(map(str, shape[1:]))}] -> [N, {features}]\n"
                         f"nn.Linear({features}, {out}),"))
        if "channels" in data:
            channels = data["channels"]
            fixes.append(Fix("add_global_pooling",
                             f"Or pool each channel to one value first (independent of the image size): "
                             f"nn.AdaptiveAvgPool2d(1), nn.Flatten(), then in_features={channels}.",
                             {"in_features": channels},
                             f"nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear({channels}, {out}),"))
    else:
        what = f"a Linear(in_features={wanted}) got {features} features (input {shape})"
        # The script's own line that built the Linear, rewritten (issue 17): `self.fc1 = nn.Linear(...)`.
        location = at_source(tl, "failed_layer", "in_features", str(features), position=0)
        snippet = located_snippet(location) if location else f"nn.Linear({features}, {out})"
        fixes.append(Fix("fix_in_features", f"Give the Linear in_features={features}, what its input has.",
                         {"in_features": features}, snippet, location=location))
    return what, fixes


def _conv(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    want, got = data["expected_channels"], data["got_channels"]
    fixes = [Fix("fix_in_channels", f"Build the first conv for {got}-channel input: in_channels={got}.",
                 {"in_channels": got}, f"nn.Conv2d({got}, {data.get('out_channels', 'out')}, kernel_size=...)")]
    if got == 1 and want == 3:
        fixes.append(Fix("convert_input", "Or feed it 3-channel images: repeat the grey channel.",
                         {}, "x = x.repeat(1, 3, 1, 1)   # or transforms.Grayscale(num_output_channels=3)"))
    return f"the conv expects {want} input channels and got {got} (input {_shape(data)})", fixes


def _dtype(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    dtypes = sorted({x["dtype"] for x in data.get("inputs") or []})
    weight = data.get("weight_dtype", "float32")
    given = ", ".join(dtypes) or "another dtype"
    if "uint8" in dtypes:  # images as decoded: 0..255
        return (f"its input is uint8 (images as decoded, 0..255) but its weights are {weight}",
                [Fix("convert_input_dtype", f"Convert the images to {weight} in [0, 1] where the batch is made.",
                     {"dtype": weight, "input_dtypes": dtypes, "scale": 1 / 255},
                     f"x = x.to(torch.{weight}) / 255   # or transforms.v2.ToDtype(torch.{weight}, scale=True)")])
    return (f"its input is {given} but its weights are {weight} (NumPy arrays are float64 by default)",
            [Fix("convert_input_dtype", f"Convert the inputs to {weight} where the batch is made.",
                 {"dtype": weight, "input_dtypes": dtypes},
                 f"x = x.to(torch.{weight})   # or torch.from_numpy(a).float() in the Dataset")])


def _device(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    devices = data.get("devices") or []
    return (f"tensors on different devices ({', '.join(devices)})",
            [Fix("move_to_device", "Put the model and every batch on the same device.",
                 {"devices": devices},
                 "device = torch.device(\"cuda\" if torch.cuda.is_available() else \"cpu\")\nmodel.to(device)\n"
                 "for x, y in loader:\n    x, y = x.to(device), y.to(device)")])


def _target_range(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    classes, seen = data.get("classes"), data.get("target_range")
    low, high = seen if seen else (None, data.get("bad_target"))
    what = f"a class index {data.get('bad_target', high)} is outside the model's {classes} classes (0..{classes - 1})" \
        if classes else "a class index is outside the model's classes"
    fixes = []
    if classes and low is not None and low >= 1 and high == classes:
        fixes.append(Fix("shift_labels", f"The labels run 1..{classes}: shift them to 0..{classes - 1}.",
                         {"shift": -1}, "y = y - 1   # labels 1..C -> 0..C-1"))
    if classes and high is not None and high >= classes:
        fixes.append(Fix("fix_num_classes", f"Or give the last layer {high + 1} outputs if there are {high + 1} "
                         "classes.", {"num_classes": high + 1}, f"nn.Linear(in_features, {high + 1})"))
    if low is not None and low < 0:
        fixes.append(Fix("set_ignore_index", f"Targets of {low} mark samples to skip: say so to the loss.",
                         {"ignore_index": low}, f"F.cross_entropy(output, y, ignore_index={low})"))
    fixes = fixes or [Fix("fix_labels", "Map the labels to 0..C-1 where the dataset makes them.", {}, None)]
    return what + (f"; the targets span {low}..{high}" if seen else ""), fixes


def _target_long(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    return (f"{data.get('loss')} needs class indices (int64) as targets, got {_dtypes(data)[-1:]}",
            [Fix("fix_target_dtype", "Make the targets int64 class indices.", {"dtype": "int64"},
                 "y = y.long()")])


def _target_float(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    return (f"{data.get('loss')} needs float targets (0.0 / 1.0), got {_dtypes(data)[-1:]}",
            [Fix("fix_target_dtype", "Make the targets float, like the output.", {"dtype": "float32"},
                 "y = y.float()")])


def _target_shape(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    output, target = _shape(data, 0), _shape(data, 1)
    if target is not None and len(target) == 2 and target[1] == 1:
        snippet = "y = y.squeeze(1)   # [N, 1] -> [N]"
    elif output is not None and output[-1:] == [1] and target == output[:-1]:
        snippet = "output = output.squeeze(-1)   # [N, 1] -> [N]"
    else:
        snippet = "y = y.view(output.shape)"
    return (f"{data.get('loss')} got an output of shape {output} and a target of shape {target}",
            [Fix("fix_target_shape", "Give the loss the target shape it expects.",
                 {"output_shape": output, "target_shape": target}, snippet)])


def _batch_size(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    output, target = _shape(data, 0), _shape(data, 1)
    return (f"the output has {output[0] if output else '?'} rows and the target {target[0] if target else '?'}",
            [Fix("fix_reshape", "A view/reshape in forward() mixed the batch dimension into the features: "
                 "flatten per sample.", {"output_shape": output, "target_shape": target},
                 "x = x.flatten(1)   # or x.view(x.size(0), -1); not x.view(-1, 16 * 5 * 5)")])


def _probabilities(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    return ("binary_cross_entropy needs probabilities in [0, 1] and got raw scores",
            [Fix("fix_loss_input", "Use the loss that takes logits: it applies the sigmoid itself, stably.",
                 {"loss": "binary_cross_entropy_with_logits"},
                 "loss = F.binary_cross_entropy_with_logits(output, y)   # or nn.BCEWithLogitsLoss()")])


def _embedding(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    size, seen = data.get("num_embeddings"), data.get("index_range")
    high = seen[1] if seen else None
    what = f"an index {high} is past the Embedding's {size} rows" if high is not None else "an index is out of range"
    return what, [Fix("fix_num_embeddings", "Size the embedding for the whole vocabulary (largest index + 1).",
                      {"num_embeddings": (high + 1) if high is not None else None},
                      f"nn.Embedding({(high + 1) if high is not None else 'vocab_size'}, "
                      f"{data.get('embedding_dim', 'dim')})")]


def _other(tl: Timeline, data: dict[str, Any]) -> tuple[str, list[Fix]]:
    return (f"{data.get('exception')}: {data.get('message')}",
            [Fix("read_traceback", "The traceback above points at the line; this error is not one torchdoctor "
                 "explains further.", {}, None)])


def _dtypes(data: dict[str, Any]) -> list[str]:
    return [x["dtype"] for x in data.get("inputs") or []]


EXPLAIN = {
    "linear_in_features": _linear, "conv_in_channels": _conv, "dtype_mismatch": _dtype,
    "device_mismatch": _device, "target_out_of_range": _target_range, "target_dtype_long": _target_long,
    "target_dtype_float": _target_float, "target_shape": _target_shape, "batch_size_mismatch": _batch_size,
    "probabilities_expected": _probabilities, "embedding_index": _embedding,
}
