"""exploding_gradients: the gradient norm grows by orders of magnitude before NaN arrives."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from ..findings import Finding, Severity
from ..timeline import Timeline
from ._fixes import add_normalization, clip_gradients, lower_learning_rate
from ._numbers import fmt, median, thin
from .base import NotEvaluated, Param, finding_for, rule

PARAMS = {
    "growth_factor": Param(1000.0, "trip when the total norm exceeds the median of the first steps by this factor"),
    "spike_factor": Param(100.0, "trip when the total norm exceeds the median of the preceding window by this factor"),
    "baseline_steps": Param(10, "steps whose median is the baseline for growth"),
    "window": Param(50, "steps in the running history a spike is compared with"),
    "min_steps": Param(5, "steps of history needed before any verdict"),
    "min_norm": Param(1.0, "norms below this are never called exploding, whatever their growth"),
}


def explosion_onset(tl: Timeline, p: dict[str, float]) -> tuple[int, float, str] | None:
    """(index into the finite series, reference norm, why) of the first step that trips."""
    series = tl.grad_norm_series()
    values = [v for _, v in series]
    min_steps = int(p["min_steps"])
    if len(values) <= min_steps:
        return None
    baseline = median(values[: int(p["baseline_steps"])])
    window = int(p["window"])
    recent = sorted(values[:min_steps])
    for i in range(min_steps, len(values)):
        v = values[i]
        running = recent[len(recent) // 2]
        if v >= p["min_norm"]:
            if baseline > 0 and v >= p["growth_factor"] * baseline:
                return i, baseline, "growth"
            if running > 0 and v >= p["spike_factor"] * running:
                return i, running, "spike"
        bisect.insort(recent, v)
        if i - window >= 0:
            recent.remove(values[i - window])
    return None


@rule("exploding_gradients", Severity.ERROR, "Gradient norm grows by orders of magnitude", PARAMS)
def exploding_gradients(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the total gradient norm (all parameters, L2) rising by orders of
    magnitude above where the run started (`growth_factor`, default 1000x the median of the
    first `baseline_steps`), or far above its own recent history (`spike_factor`, default
    100x the median of the last `window` steps). Norms below `min_norm` never count.

    Why it matters: an update is learning rate x gradient; once the gradient is thousands of
    times larger than at the start, updates overshoot, the loss jumps, and a few steps later
    weights or activations overflow to Inf/NaN. The finding names the step it started, so
    you see it before the NaN.

    What to do: clip the gradient norm (the finding derives `max_norm` from the healthy
    steps), lower the learning rate (derived from the one in use), and add normalization
    layers where a deep stack has none.
    """
    series = tl.grad_norm_series()
    if len(series) <= int(p["min_steps"]):
        raise NotEvaluated(f"{len(series)} steps with finite gradients; needs more than {int(p['min_steps'])}")
    onset = explosion_onset(tl, p)
    if onset is None:
        return
    index, reference, why = onset
    step, value = series[index]
    peak_step, peak = max(series, key=lambda sv: sv[1])
    record = next((r for r in tl.steps if r.step == peak_step), None)
    top: list[dict[str, object]] = []
    if record is not None and record.layer_grad_norms:
        ranked = sorted(
            ((v, i) for i, v in enumerate(record.layer_grad_norms) if v is not None and math.isfinite(v)),
            reverse=True,
        )
        top = [{"layer": tl.layers[i].name, "type": tl.layers[i].type, "norm": v} for v, i in ranked[:3]]
    nan_events = tl.events_of("nonfinite_loss") + tl.events_of("nonfinite_gradient")
    nan_step = min((e.step for e in nan_events if e.step is not None), default=None)
    ratio = value / reference
    basis = "its starting level" if why == "growth" else "its recent history"
    title = f"Gradient norm exploded at step {step}: {fmt(value)}, {ratio:,.0f}x {basis}"
    if nan_step is not None and nan_step > step:
        title += f" (the loss went non-finite at step {nan_step})"
    fixes = [f for f in (clip_gradients(tl, step), lower_learning_rate(tl, step), add_normalization(tl)) if f]
    yield finding_for(
        "exploding_gradients",
        title,
        step=step,
        epoch=next((r.epoch for r in tl.steps if r.step == step), None),
        where=top[0]["layer"] if top else None,  # type: ignore[arg-type]
        evidence={
            "first_step": step,
            "norm": value,
            "reference_norm": reference,
            "criterion": why,
            "ratio": ratio,
            "peak_norm": peak,
            "peak_step": peak_step,
            "largest_layers": top,
            "nonfinite_from_step": nan_step,
            "norm_history": thin(series),
        },
        fixes=fixes,
    )
