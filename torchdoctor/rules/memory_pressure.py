"""memory_pressure: the step's peak memory is near (or over) what the device, or the user's budget, has."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Severity
from ..formatting import format_bytes
from ..timeline import Timeline
from ._memory import breakdown, largest_parts, memory_fixes
from .base import NotEvaluated, Param, finding_for, rule


def measured_peak(tl: Timeline) -> tuple[int | None, int | None, str, str]:
    """(peak, limit, what the peak is, what the limit is).

    With a --memory-budget on CPU, the peak is the training step's own (parameters, gradients,
    optimizer state, saved activations), what would have to sit on a GPU; on CUDA it is what the
    caching allocator reserved; without a budget on CPU, the process's peak RSS against the RAM.
    """
    mem = tl.memory
    on_cuda = mem.peak_reserved is not None
    if on_cuda:
        peak, measured = mem.peak_reserved, "peak memory reserved by the CUDA caching allocator"
    elif mem.budget is not None:
        profile = mem.profile
        peak = profile.step_total if profile is not None else None
        measured = "estimated training-step peak (parameters + gradients + optimizer state + activations)"
    else:
        peak, measured = mem.peak_rss, "peak resident memory of the process"
    if mem.budget is not None:
        return peak, mem.budget, measured, "--memory-budget"
    return peak, mem.capacity, measured, "device memory" if on_cuda else "RAM"


@rule("memory_pressure", Severity.WARNING, "Peak memory near the device's capacity or the --memory-budget",
      {"threshold": Param(0.9, "share of the capacity/budget at which the peak is pressure"),
       "margin": Param(0.1, "share of the capacity/budget kept free when sizing the batch that fits")})
def memory_pressure(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: a training step whose peak memory is above 90% of what the device has (the
    GPU's memory from `torch.cuda.mem_get_info`, the machine's RAM on CPU), or of the budget given
    with `--memory-budget 16GiB`, which answers "will this fit on a 16 GB card?" from any machine.
    Over the limit it is an error: the run would die of out-of-memory there.

    How it is measured: on a few sampled training steps torchdoctor sees every tensor autograd
    saves for backward (`torch.autograd.graph.saved_tensors_hooks`, counted once per storage and
    attributed to the module that saved it), plus the parameters, gradients and optimizer state.
    On CUDA the caching allocator's peak is the measured number; on CPU with a budget, the sum of
    those parts (an upper bound: gradients and activations never peak at exactly the same time).

    Why it matters: a run near the limit dies as soon as a batch is a little larger, a sequence a
    little longer, or memory fragments; a run over it cannot start on that device.

    The fixes carry numbers: the largest batch size that fits with a 10% margin (activations grow
    with the batch, parameters and optimizer state do not), the modules to checkpoint and the
    bytes that saves, what bfloat16 autocast saves, and a lighter optimizer where its state is the
    largest part. `torchdoctor run --memory-report` shows the per-module table.
    """
    peak, limit, measured, against = measured_peak(tl)
    if limit is None:
        raise NotEvaluated("the device's capacity is unknown")
    if peak is None:
        raise NotEvaluated("no training step was measured")
    share = peak / limit
    if share < p["threshold"]:
        return
    mem = tl.memory
    profile = mem.profile
    over = peak > limit
    other = max(0, peak - profile.step_total) if profile is not None and mem.peak_reserved is not None else 0
    limit_text = f"the {format_bytes(limit)} budget" if against == "--memory-budget" else \
        f"the {format_bytes(limit)} of {against}"
    title = (f"Peak memory {format_bytes(peak)} does not fit {limit_text} ({share:.0%})" if over
             else f"Peak memory {format_bytes(peak)} is {share:.0%} of {limit_text}")
    if profile is not None:
        title += ": " + ", ".join(largest_parts(profile)[:2])
    heaviest = sorted(profile.top_level(), key=lambda m: -m.activations)[:3] if profile is not None else []
    yield finding_for(
        "memory_pressure",
        title,
        severity=Severity.ERROR if over else Severity.WARNING,
        step=profile.step if profile is not None else None,
        where=heaviest[0].name if heaviest and heaviest[0].activations else None,
        evidence={
            "peak_bytes": peak,
            "limit_bytes": limit,
            "limit_source": against,
            "share": share,
            "measured": measured,
            "breakdown": breakdown(profile),
            "unaccounted_bytes": other or None,
            "largest_activations": {m.name: m.activations for m in heaviest if m.activations},
        },
        fixes=memory_fixes(tl, profile, limit, p["margin"], other),
    )
