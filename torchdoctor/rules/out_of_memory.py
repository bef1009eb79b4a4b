"""out_of_memory: the run died of an out-of-memory error, CUDA's or the CPU allocator's."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Fix, Severity
from ..formatting import format_bytes
from ..timeline import Timeline
from ._failures import failures, oom_facts
from ._memory import breakdown, largest_parts, memory_fixes
from .base import Param, finding_for, rule


@rule("out_of_memory", Severity.CRITICAL, "The run died of an out-of-memory error (CUDA or CPU)",
      {"margin": Param(0.1, "share of the device's memory kept free when sizing the batch that fits")})
def out_of_memory(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the script ended with `torch.cuda.OutOfMemoryError` or the CPU allocator's
    "can't allocate memory". The report is still written and the script's exit status passes
    through; the finding says at which step it died, in which phase (forward, backward,
    optimizer step) and module, how much was being allocated, and the step's breakdown as far as
    it was measured (parameters, gradients, optimizer state, saved activations).

    Why it matters: it is the error PyTorch users ask about most, and the message alone does not
    say what to change. A single allocation larger than the whole device is a shape bug, not a
    batch size problem; an Adam step that dies on its first step is its state being allocated;
    memory "reserved but unallocated" is fragmentation, which the allocator can avoid.

    The fixes carry numbers: the batch size that fits the device with a 10% margin, the modules
    to checkpoint and what that saves, bfloat16 autocast, a lighter optimizer.
    """
    found = [(e, facts) for e in failures(tl) if (facts := oom_facts(e.data)) is not None]
    if not found:
        return
    event, data = found[0]
    mem = tl.memory
    profile = mem.profile
    requested = data.get("requested_bytes")
    limit = mem.budget or mem.capacity
    device = "CUDA" if data.get("kind") == "cuda" else "CPU"
    where = data.get("module")
    place = data.get("phase", "forward") + (f" of {tl.label(where)}" if where else "")
    if data.get("loss"):
        place = f"loss {data['loss']} (output {data['shapes'][0]}, target {data['shapes'][-1]})"
    title = f"The run died of {device} out-of-memory at step {event.step}, in the {place}"
    if requested:
        title += f", allocating {format_bytes(requested)}"
    fixes: list[Fix] = []
    broadcast = data.get("broadcast_shape")
    if data.get("phase") == "loss" and broadcast:
        fixes.append(_loss_shape_fix(data["loss"], data["shapes"], broadcast))
    if requested and limit and requested > limit:
        fixes.append(Fix(
            "fix_allocation_size",
            f"One allocation of {format_bytes(requested)} is larger than all of the device's "
            f"{format_bytes(limit)}: no batch size fixes that. Check the shapes where it was made"
            + (f" ({where})" if where else "") + ": an unintended broadcast (N,1) * (1,N), a flatten over "
            "the wrong dimensions, or a size computed from the wrong variable.",
            {"requested_bytes": requested, "limit_bytes": limit, "module": where},
            "print(x.shape)  # before the failing line: which dimension is far larger than intended?",
        ))
    else:
        other = 0
        if mem.peak_reserved is not None and profile is not None:
            other = max(0, mem.peak_reserved - profile.step_total)
        fixes.extend(memory_fixes(tl, profile, limit, p["margin"], other))
        fragmented = data.get("reserved_unallocated_bytes")
        if fragmented and requested and fragmented >= requested:
            fixes.insert(0, Fix(
                "reduce_fragmentation",
                f"{format_bytes(fragmented)} was reserved by PyTorch but unallocated, more than the "
                f"{format_bytes(requested)} requested: the cache is fragmented. Let the allocator grow "
                "segments instead.",
                {"reserved_unallocated_bytes": fragmented},
                "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True torchdoctor run train.py",
            ))
    if profile is not None:
        title += " (the step held " + ", ".join(largest_parts(profile)[:3]) + ")"
    yield finding_for(
        "out_of_memory",
        title,
        step=event.step,
        epoch=event.epoch,
        where=where,
        evidence={
            "step": event.step,
            "device": device.lower(),
            "phase": data.get("phase"),
            "module": where,
            "requested_bytes": requested,
            "limit_bytes": limit,
            "peak_allocated_bytes": mem.peak_allocated,
            "breakdown": breakdown(profile),
            "message": data.get("message"),
        },
        fixes=fixes,
    )


def _loss_shape_fix(loss: str, shapes: list[list[int]], broadcast: list[int]) -> Fix:
    """An elementwise loss given (N, 1) and (N,) broadcasts them to (N, N): N squared elements."""
    given, target = shapes[0], shapes[-1]
    if given == [*target, 1]:
        snippet = f"loss = F.{loss}(output.squeeze(-1), target)"
    elif target == [*given, 1]:
        snippet = f"loss = F.{loss}(output, target.squeeze(-1))"
    else:
        snippet = f"loss = F.{loss}(output.reshape(target.shape), target)"
    return Fix(
        "fix_loss_input",
        f"{loss} was given an output of shape {given} and a target of shape {target}: they broadcast "
        f"to {broadcast}, so it compares every output with every target instead of each with its own. "
        "Give them the same shape.",
        {"loss": loss, "input_shape": given, "target_shape": target, "broadcast_shape": broadcast},
        snippet,
    )
