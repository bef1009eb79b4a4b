"""How the run died, named from what the probes recorded: an out-of-memory error (and how much it
was allocating), or one of the classic mistakes (a conv stack flattened into a Linear of the wrong
size, a channel count, a dtype or device mismatch, class indices out of range, a target of the
wrong dtype or shape), and the vision ones (_vision_crashes: boxes, detector targets, masks, a GAN's
second backward). Read by script_error and out_of_memory, which must agree on which is which.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..layers import EMBEDDING_TYPES
from ..timeline import Event, Timeline
from ._vision_crashes import vision_kind

EXCEPTION_FACTS = ("exception", "exception_types", "message")
BATCH_FACTS = ("targets", "loss_call")  # the failing batch's, read by _vision_crashes


def failures(tl: Timeline) -> list[Event]:
    """The run's fatal exception, as recorded (at most one: the script ends on it)."""
    return tl.events_of("script_failed")


def _where(failure: dict[str, Any]) -> dict[str, Any]:
    """Where in the run it happened (phase, module, shapes...): the facts beside the exception's."""
    return {k: v for k, v in failure.items() if k not in EXCEPTION_FACTS and k not in BATCH_FACTS}


ALLOCATION = re.compile(
    r"[Tt]ried to allocate (?:(?P<bytes>\d+) bytes|(?P<num>[\d.]+) ?(?P<unit>[KMGT]i?B))"
)
UNALLOCATED = re.compile(r"(?P<num>[\d.]+) ?(?P<unit>[KMGT]i?B) is reserved by PyTorch but unallocated")
UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def oom_facts(failure: dict[str, Any]) -> dict[str, Any] | None:
    """If the failure is an out-of-memory error (CUDA's, or the CPU allocator's), what it says:
    the kind, how many bytes were being allocated, and where it happened."""
    message = failure.get("message") or ""
    types = set(failure.get("exception_types") or [failure.get("exception")])
    if "OutOfMemoryError" in types:  # torch.cuda.OutOfMemoryError
        kind = "cuda"
    elif "MemoryError" in types:
        kind = "cpu"
    elif "RuntimeError" in types and (
        "can't allocate memory" in message or "DefaultCPUAllocator" in message and "allocate" in message
    ):
        kind = "cpu"
    elif "RuntimeError" in types and "out of memory" in message.lower():
        kind = "cuda" if "cuda" in message.lower() or "gpu" in message.lower() else "cpu"
    else:
        return None
    requested = None
    found = ALLOCATION.search(message)
    if found:
        if found.group("bytes"):
            requested = int(found.group("bytes"))
        else:
            requested = _size(found.group("num"), found.group("unit"))
    unallocated = UNALLOCATED.search(message)
    first_line = message.strip().splitlines()[0] if message.strip() else failure.get("exception")
    return {"kind": kind, "requested_bytes": requested, "message": first_line[:300],
            "reserved_unallocated_bytes": _size(unallocated.group("num"), unallocated.group("unit"))
            if unallocated else None, **_where(failure)}


def _size(number: str, unit: str) -> int:
    return int(float(number) * UNITS[unit.upper()])


def classify(failure: dict[str, Any]) -> dict[str, Any]:
    """The kind of mistake and the numbers its fix needs, from the message and where it happened."""
    text = failure.get("message") or ""
    message = text.strip().splitlines()[0] if text.strip() else ""
    where = _where(failure)
    info: dict[str, Any] = {"exception": failure.get("exception"), "message": message[:400], **where}
    inputs = where.get("inputs") or []
    first = inputs[0] if inputs else {}
    kind = vision_kind(failure, message, info) or "other"
    if kind != "other":
        pass
    elif "shapes cannot be multiplied" in message and where.get("module_type") == "Linear" and first:
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
    elif where.get("module_type") in EMBEDDING_TYPES and "index out of range" in message:
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
