"""What the script was doing when it died, in numbers a fix can use.

The probes note where an exception left the run (the innermost module whose forward raised,
with its input and the layer's sizes; a loss with its output and target). When the script ends
on that exception, `classify` reads the message PyTorch gave with that context and names the
classic mistake: a conv stack flattened into a Linear of the wrong size, a channel count, a
dtype or device mismatch, class indices out of range, a target of the wrong dtype or shape.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

LAYER_SIZES = ("in_features", "out_features", "in_channels", "out_channels", "num_embeddings", "embedding_dim")


def tensor_facts(values: Any) -> list[dict[str, Any]]:
    """Shape, dtype and device of the tensors among `values` (no data is read)."""
    out = []
    for v in values if isinstance(values, (list, tuple)) else [values]:
        if isinstance(v, torch.Tensor):
            out.append({"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""), "device": str(v.device)})
    return out


def module_facts(module: torch.nn.Module, args: tuple) -> dict[str, Any]:
    facts: dict[str, Any] = {"module_type": type(module).__name__, "inputs": tensor_facts(args)}
    for name in LAYER_SIZES:
        value = getattr(module, name, None)
        if isinstance(value, int):
            facts[name] = value
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        facts["weight_dtype"] = str(weight.dtype).replace("torch.", "")
        facts["weight_device"] = str(weight.device)
    if type(module).__name__ in ("Embedding", "EmbeddingBag") and args and isinstance(args[0], torch.Tensor):
        facts["index_range"] = _int_range(args[0])
    return facts


def raising_module(exc: BaseException | None, known: dict[int, str]) -> tuple[torch.nn.Module, tuple] | None:
    """The innermost of the `known` modules whose method is on the exception's traceback, with
    the positional arguments it was called with. Once discovery is over only the root modules
    are hooked; the traceback still names the layer that raised (a Linear's forward) and holds
    its input."""
    found = None
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and id(owner) in known:
            code = frame.f_code
            names = code.co_varnames[1:code.co_argcount]
            args = [frame.f_locals[n] for n in names if n in frame.f_locals]
            if code.co_flags & 0x04:  # *args
                extra = frame.f_locals.get(code.co_varnames[code.co_argcount + code.co_kwonlyargcount])
                if isinstance(extra, tuple):
                    args += list(extra)
            found = (owner, tuple(args))
        tb = tb.tb_next
    return found


def loss_facts(args: tuple) -> dict[str, Any]:
    facts: dict[str, Any] = {"inputs": tensor_facts(args[:2])}
    if len(args) >= 2 and isinstance(args[1], torch.Tensor) and not args[1].is_floating_point():
        facts["target_range"] = _int_range(args[1])
    return facts


def _int_range(t: torch.Tensor) -> list[int] | None:
    """Read on the failure path only; after a CUDA device-side assert nothing can be read."""
    try:
        if t.numel() == 0 or t.is_floating_point():
            return None
        return [int(t.min()), int(t.max())]
    except Exception:
        return None


def classify(exc: BaseException, where: dict[str, Any]) -> dict[str, Any]:
    """The kind of mistake and the numbers its fix needs, from the message and where it happened."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    info: dict[str, Any] = {"exception": type(exc).__name__, "message": message[:400], **where}
    inputs = where.get("inputs") or []
    first = inputs[0] if inputs else {}
    kind = "other"
    if "shapes cannot be multiplied" in message and where.get("module_type") == "Linear" and first:
        kind = "linear_in_features"
        shape = first["shape"]
        info["features"] = math.prod(shape[1:]) if len(shape) > 2 else shape[-1]
        if len(shape) == 4:
            info["channels"] = shape[1]
    elif (found := re.search(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels", message)):
        kind = "conv_in_channels"
        info["expected_channels"], info["got_channels"] = int(found.group(1)), int(found.group(2))
    elif re.search(r"same dtype|Input type \(\w+\) and (bias|weight) type|expected scalar type|"
                   r"should be the same", message) and "device" not in message:
        kind = "dtype_mismatch"
    elif ("same device" in message or "not on the expected device" in message
          or re.search(r"Input type \(.*cuda.*\) and weight type", message)):
        kind = "device_mismatch"
        info["devices"] = sorted(set(re.findall(r"\b(cuda:\d+|cuda|cpu|mps|meta|xpu)\b", message)))
    elif where.get("phase") == "loss":
        kind = _loss_kind(message, info)
    elif where.get("module_type") in ("Embedding", "EmbeddingBag") and "index out of range" in message:
        kind = "embedding_index"
    info["kind"] = kind
    return info


def _loss_kind(message: str, info: dict[str, Any]) -> str:
    if (found := re.search(r"Target (-?\d+) is out of bounds", message)) or "device-side assert" in message:
        shapes = [x["shape"] for x in info.get("inputs") or []]
        if shapes and len(shapes[0]) >= 2:
            info["classes"] = shapes[0][1]
        if found:
            info["bad_target"] = int(found.group(1))
        return "target_out_of_range"
    if "expected target dtype to be Long" in message or "expected scalar type Long" in message:
        return "target_dtype_long"
    if "can't be cast to the desired output type" in message:
        return "target_dtype_float"
    if "multi-target not supported" in message or "must be the same as input size" in message:
        return "target_shape"
    if "batch_size" in message and "match target batch_size" in message:
        return "batch_size_mismatch"
    if "should be between 0 and 1" in message:
        return "probabilities_expected"
    return "other"
