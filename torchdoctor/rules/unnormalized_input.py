"""unnormalized_input: the model's input is far from a normalized range (raw 0-255 pixels)."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..layers import CONTAINER_TYPES, NORMALIZATION_TYPES
from ..timeline import Timeline
from .base import Param, finding_for, rule

# A model's first module that standardizes from a [0, 1] input (torchvision's detectors)
SELF_NORMALIZING = frozenset({"GeneralizedRCNNTransform"})


@rule("unnormalized_input", Severity.WARNING, "Input values far from a normalized range (e.g. raw 0-255 pixels)",
      {"max_scale": Param(10.0, "a mean or standard deviation above this (in absolute value) is unnormalized")})
def unnormalized_input(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the floating-point batches the model was trained on (sampled on the
    first steps, then now and then) have a mean or standard deviation far above 1: raw 0-255
    pixels cast to float, or features in their own units (prices, pixels, counts).

    Why it matters: the first layer's pre-activations scale with the input, so with inputs in
    the hundreds the initial weights saturate activations and the gradients of the first layer
    are hundreds of times larger than the rest; the usable learning rate becomes tiny.

    Not flagged: inputs in [0, 1] or standardized, integer inputs (token indices), and models
    whose first layer is a normalization layer (BatchNorm, LayerNorm) that standardizes the
    input itself.
    """
    samples = tl.habits.inputs
    if not samples:
        return
    limit = p["max_scale"]
    bad = [s for s in samples if max(abs(s["mean"]), s["std"]) > limit]
    if len(bad) * 2 <= len(samples):
        return
    first = tl.first_module(skip=CONTAINER_TYPES)
    if first is not None and first[1] in NORMALIZATION_TYPES:
        return
    s = bad[0]
    pixels = s["min"] >= 0 and 128 <= s["max"] <= 255.5
    channel_mean, channel_std = s.get("channel_mean"), s.get("channel_std")
    if channel_mean and channel_std:
        scale = 255.0 if pixels else 1.0
        mean = [round(m / scale, 3) for m in channel_mean]
        std = [round(max(v, 1e-6) / scale, 3) for v in channel_std]
        snippet = ((("x = x.float() / 255.0  # to [0, 1] first\n") if pixels else "")
                   + f"normalize = torchvision.transforms.Normalize(mean={mean}, std={std})\n"
                   "x = normalize(x)  # or add it to the Dataset's transforms")
    else:
        mean, std = round(s["mean"], 4), round(max(s["std"], 1e-6), 4)
        snippet = f"x = (x - {mean}) / {std}  # statistics of your training set; compute them once"
    what = "raw 0-255 pixels" if pixels else "unscaled values"
    text = ("Scale the pixels to [0, 1] and standardize each channel with these statistics (measured on "
            "your batches)." if pixels else "Standardize the input with its mean and standard deviation.")
    if first is not None and first[1] in SELF_NORMALIZING:
        # torchvision's detectors standardize inside (image_mean, image_std) but expect [0, 1] images.
        text = (f"{first[1]} standardizes the images itself, from [0, 1]: give it pixels divided by 255 "
                "(transforms.v2.ToDtype(torch.float32, scale=True) does it).")
        snippet = "images = [img.float() / 255.0 for img in images]  # the detector normalizes from [0, 1]"
    yield finding_for(
        "unnormalized_input",
        f"The model's input looks like {what}: range {fmt(s['min'])}..{fmt(s['max'])}, mean {fmt(s['mean'])}, "
        f"std {fmt(s['std'])}",
        step=s["step"], where=first[0] if first else None,
        evidence={"min": s["min"], "max": s["max"], "mean": s["mean"], "std": s["std"], "shape": s["shape"],
                  "channel_mean": channel_mean, "channel_std": channel_std, "samples": len(samples),
                  "unnormalized_samples": len(bad)},
        fixes=[Fix("normalize_input", text, {"mean": mean, "std": std, "divide_by": 255 if pixels else None},
                   snippet)],
    )
