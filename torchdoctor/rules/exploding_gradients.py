"""exploding_gradients: the gradient norm grows by orders of magnitude before NaN arrives."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from ..findings import Finding, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._fixes import add_normalization, clip_gradients, lower_learning_rate
from ._numbers import median, thin
from .base import NotEvaluated, Param, finding_for, rule

PARAMS = {
    "growth_factor": Param(1000.0, "trip when the total norm exceeds the median of the first steps by this factor"),
    "spike_factor": Param(100.0, "trip when the total norm exceeds the median of the preceding window by this factor"),
    "baseline_steps": Param(10, "steps whose median is the baseline for growth"),
    "window": Param(50, "steps in the running history a spike is compared with"),
    "min_steps": Param(5, "steps of history needed before a spike verdict"),
    "growth_history": Param(2, "steps of history needed before a growth verdict: 1000x needs no long history"),
    "min_norm": Param(1.0, "norms below this are never called exploding, whatever their growth"),
}


# A float32 sum of squares overflows past 3.4e38, so a norm that reads Inf over finite gradients
# was at least sqrt(3.4e38).
OVERFLOWED_NORM = math.sqrt(3.4028234663852886e38)


def norm_series(tl: Timeline) -> list[tuple[int, float]]:
    """(step, total norm) of the steps whose gradients were all finite. A norm that overflowed to
    Inf while every gradient was finite (its float32 sum of squares passed 3.4e38) is the largest
    explosion of all, not a missing value: it counts as its lower bound, 1.8e19."""
    series = []
    for rec in tl.steps:
        value = rec.grad_norm
        if value is None or math.isnan(value):
            continue
        if math.isinf(value):
            if rec.nonfinite_grads:
                continue
            value = OVERFLOWED_NORM
        series.append((rec.step, value))
    return series


def explosion_onset(tl: Timeline, p: dict[str, float]) -> tuple[int, float, str] | None:
    """(index into `norm_series`, reference norm, why) of the first step that trips. Each phase of
    the run is judged against its own history: a new head's first gradients are large beside a
    converged backbone's, and that is no explosion."""
    indexed = [(step, value, i) for i, (step, value) in enumerate(norm_series(tl))]
    for _, _, part in tl.by_phase(indexed):
        found = _onset([value for _, value, _ in part], p)
        if found is not None:
            return part[found[0]][2], found[1], found[2]
    return None


def _onset(values: list[float], p: dict[str, float]) -> tuple[int, float, str] | None:
    """(index into `values`, reference norm, why) of the first norm of one phase that trips."""
    min_steps = int(p["min_steps"])
    first = max(1, int(p["growth_history"]))
    if len(values) <= min(first, min_steps):
        return None
    baseline = median(values[: int(p["baseline_steps"])])
    # A blow-up within the first steps (a learning rate far too high overflows by step 4 or 5)
    # is judged on growth alone, against the steps before it as well as the baseline.
    for i in range(first, min(min_steps, len(values))):
        v = values[i]
        reference = max(baseline, median(values[:i]))
        if v >= p["min_norm"] and reference > 0 and v >= p["growth_factor"] * reference:
            return i, reference, "growth"
    if len(values) <= min_steps:
        return None
    window = int(p["window"])
    recent = sorted(values[:min_steps])
    peak = max(values[:min_steps])
    for i in range(min_steps, len(values)):
        v = values[i]
        running = recent[len(recent) // 2]
        if v >= p["min_norm"]:
            if baseline > 0 and v >= p["growth_factor"] * baseline:
                return i, baseline, "growth"
            # A spike within the run's own earlier range (a hard batch late in a converged run,
            # whose early norms were larger) hurt nothing: only a norm past the run's peak counts.
            if running > 0 and v >= p["spike_factor"] * running and v > peak:
                return i, running, "spike"
        peak = max(peak, v)
        bisect.insort(recent, v)
        if i - window >= 0:
            recent.remove(values[i - window])
    return None


@rule("exploding_gradients", Severity.ERROR, "Gradient norm grows by orders of magnitude", PARAMS)
def exploding_gradients(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: the total gradient norm (all parameters, L2) rising by orders of
    magnitude above where the run started (`growth_factor`, default 1000x the median of the
    first `baseline_steps`), or far above its own recent history (`spike_factor`, default
    100x the median of the last `window` steps) and above every norm the run had before (a
    spike within the run's own earlier range, a hard batch late in a run whose early norms were
    larger, hurt nothing). Each phase of the run (Timeline.phases: a new optimizer, other
    parameters trained, another dataset, a learning-rate restart) is judged against its own
    history. Norms below `min_norm` never count; a norm
    that overflowed to Inf while every gradient was finite counts as 1.8e19. A spike
    needs `min_steps` (5) steps of history; growth is judged from the third step on
    (`growth_history`, 2), against the larger of the baseline and the median of the steps
    before it, so a learning rate so high that the loss overflows by step 4 or 5 is still
    caught before the NaN.

    Why it matters: an update is learning rate x gradient; once the gradient is thousands of
    times larger than at the start, updates overshoot, the loss jumps, and a few steps later
    weights or activations overflow to Inf/NaN. The finding names the step it started, so
    you see it before the NaN.

    What to do: clip the gradient norm (the finding derives `max_norm` from the healthy
    steps), lower the learning rate (derived from the one in use), and add normalization
    layers where a deep stack has none.
    """
    series = norm_series(tl)
    needed = min(max(1, int(p["growth_history"])), int(p["min_steps"]))
    if len(series) <= needed:
        raise NotEvaluated(f"{len(series)} steps with finite gradients; needs more than {needed}")
    onset = explosion_onset(tl, p)
    if onset is None:
        return
    index, reference, why = onset
    step, value = series[index]
    peak_step, peak = max(series, key=lambda sv: sv[1])
    record = next((r for r in tl.steps if r.step == peak_step), None)
    top: list[dict[str, object]] = []
    if record is not None and record.layer_grad_norms:
        finite_grads = not record.nonfinite_grads  # then an Inf layer norm is one that overflowed
        ranked = sorted(
            ((OVERFLOWED_NORM if math.isinf(v) and finite_grads else v, i)
             for i, v in enumerate(record.layer_grad_norms)
             if v is not None and (math.isfinite(v) or (math.isinf(v) and finite_grads))),
            reverse=True,
        )
        top = [{"layer": tl.layers[i].name, "type": tl.layers[i].type, "norm": v} for v, i in ranked[:3]]
    nan_events = tl.events_of("nonfinite_loss") + tl.events_of("nonfinite_gradient")
    nan_step = min((e.step for e in nan_events if e.step is not None), default=None)
    ratio = value / reference
    basis = "its starting level" if why == "growth" else "its recent history"
    times = f"{ratio:,.0f}x" if ratio < 1e6 else f"{fmt(ratio)}x"
    onset_record = next((r for r in tl.steps if r.step == step), None)
    overflowed = onset_record is not None and math.isinf(onset_record.grad_norm or 0.0)
    if overflowed:
        title = f"Gradient norm overflowed at step {step}: over {fmt(OVERFLOWED_NORM)}, {times} {basis}"
    else:
        title = f"Gradient norm exploded at step {step}: {fmt(value)}, {times} {basis}"
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
            "norm_overflowed": overflowed,
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
