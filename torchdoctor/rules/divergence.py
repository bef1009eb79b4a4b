"""divergence: the training loss trends up, or swings wildly without progress, while staying finite."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Timeline
from ._dynamics import Block, block_medians, block_noise, block_window, log_volatility, med3, progress
from ._fixes import add_warmup, clip_gradients, lower_learning_rate
from ._numbers import nice, thin
from .base import NotEvaluated, Param, finding_for, rule

PARAMS = {
    "min_steps": Param(30, "finite training losses needed before any verdict"),
    "rise_factor": Param(1.5, "trend: the last `sustain_windows` window medians all at least this times the lowest"),
    "sustain_windows": Param(3, "trend: windows at the end of the run that must all stay risen (not one spike)"),
    "min_scale": Param(0.05, "rises whose smoothed end stays below this fraction of the starting loss are ignored"),
    "min_progress": Param(0.05, "oscillation: no net progress means the loss ended less than this fraction lower"),
    "min_oscillation_steps": Param(100, "oscillation: finite losses needed (noise that wild hides slow progress)"),
    "oscillation": Param(0.8, "oscillation: median |log(loss_t / loss_t-1)| at or above this (0.8: 2.2x a step)"),
}


@dataclass
class Verdict:
    criterion: str  # "trend" or "oscillation"
    window: int
    blocks: list[Block]
    lowest: Block
    start: float
    end: float
    volatility: float
    onset_step: int
    factor: float  # the rise the trend criterion required


def divergence_verdict(series: Sequence[tuple[int, float]], p: dict[str, float]) -> Verdict | None:
    """The verdict on a finite loss series, or None when it did not diverge (also used by
    loss_plateau, so that a diverging run is not called a plateau as well)."""
    if len(series) < max(int(p["min_steps"]), 2) or any(v < 0 for _, v in series):
        return None
    values = [v for _, v in series]
    window = block_window(len(series))
    blocks = block_medians(series, window)
    sustain = max(1, int(p["sustain_windows"]))
    if len(blocks) < sustain + 1:
        return None
    start, end = blocks[0].median, blocks[-1].median
    volatility = log_volatility(values)
    if end <= 0 or end < p["min_scale"] * start:
        return None
    smooth = med3([b.median for b in blocks])
    low_index = min(range(len(blocks)), key=lambda i: smooth[i])
    lowest = Block(blocks[low_index].first_step, blocks[low_index].last_step, smooth[low_index])
    # A rise must clear the noise as well as `rise_factor`: three standard deviations of a window
    # median, estimated from the step-to-step spread (short, very noisy runs need more).
    factor = max(p["rise_factor"], math.exp(3 * block_noise(values, window)))
    threshold = factor * lowest.median
    if low_index < len(blocks) - sustain and all(b.median >= threshold for b in blocks[-sustain:]):
        onset = next(b for b in blocks[low_index + 1:] if b.median >= threshold)
        return Verdict("trend", window, blocks, lowest, start, end, volatility, onset.first_step, factor)
    moved = progress(series)
    long_enough = len(series) >= p["min_oscillation_steps"]
    if long_enough and volatility >= p["oscillation"] and not moved.improved(p["min_progress"], doubt=0.0):
        onset_step = series[0][0]
        for i in range(0, len(series), window):
            if log_volatility(values[i:i + window + 1]) >= p["oscillation"]:
                onset_step = series[i][0]
                break
        return Verdict("oscillation", window, blocks, lowest, moved.start, moved.end, volatility, onset_step,
                       factor)
    return None


@rule("divergence", Severity.ERROR, "The loss trends up or oscillates wildly (learning rate too high)", PARAMS)
def divergence(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: a training loss that stays finite but diverges, by one of two criteria.
    The loss is smoothed by medians over consecutive windows of max(5, steps/20) steps, so a
    noisy mini-batch or an isolated spike moves nothing.

    - trend: each of the last `sustain_windows` (3) window medians is at least `rise_factor`
      (1.5x) the lowest (median of three neighbouring windows), which came before them. In a
      short, very noisy run the factor grows to three standard deviations of a window median
      (estimated from the step-to-step spread), so noise alone does not make a trend. The
      finding's step is where the smoothed loss first stood that high after its low; the
      low itself, and the learning rate in force there, are in the evidence.
    - oscillation: the loss swings wildly from step to step (median |log(loss_t / loss_t-1)|
      at or above `oscillation`, 0.8: a typical step multiplies or divides the loss by 2.2)
      and the run makes no net progress: the typical loss of its last quarter is less than
      `min_progress` (5%) below that of its start, and no robust trend line through the
      windows falls that much either. Ordinary mini-batch noise (a 20-40% spread) is a
      quarter to a half of that threshold; batches of one or two samples can reach it, so
      this criterion waits for `min_oscillation_steps` (100) steps.

    No verdict before `min_steps` (30) finite losses, or on losses that go negative. Rises
    whose end stays below `min_scale` (5%) of the starting loss are ignored: a converged run
    wobbling around a tiny loss is not diverging. If the loss went NaN/Inf, nonfinite_loss
    reports it and this rule stays silent. Debatable cases: a loss meant to rise (a GAN's
    generator loss), and a run cut off just after a warm restart (SGDR) before the loss came
    back down, can read as a trend; the learning rate at the low and at the end are in the
    evidence; disable the rule for such runs.

    Why it matters: a loss that climbs back or thrashes means the updates overshoot: the
    learning rate is too high for this model and batch size (or for this phase of training),
    and the run is wasting its compute or about to blow up.

    What to do: lower the learning rate (5x for a trend, 10x for oscillation, from the one in
    force where the loss was lowest), warm it up over the first steps (unless the run already
    does), decay it when it was constant, and clip gradients (`max_norm` from the steps
    before the low).
    """
    if tl.events_of("nonfinite_loss"):
        return  # nonfinite_loss explains this run; a second finding would only repeat it
    series = tl.finite_losses()
    needed = int(p["min_steps"])
    if len(series) < needed:
        raise NotEvaluated(f"{len(series)} finite training losses; needs at least {needed}")
    if any(v < 0 for _, v in series):
        raise NotEvaluated("the training loss takes negative values: a rise cannot be measured as a ratio")
    verdict = divergence_verdict(series, p)
    if verdict is None:
        return
    low, start, end = verdict.lowest, verdict.start, verdict.end
    trend = verdict.criterion == "trend"
    # The learning rate to start from: where the loss was lowest (trend), where the swings began (oscillation).
    ref_step = low.last_step if trend else verdict.onset_step
    lr_low = tl.lr_at(ref_step)
    lr_end = tl.last_lr
    ratio = end / low.median if low.median > 0 else None
    last_step = series[-1][0]
    if verdict.criterion == "trend":
        times = "up" if ratio is None else f"{ratio:.1f}x" if ratio < 100 else f"{fmt(ratio)}x"
        title = (f"Loss diverging: it climbed {times} from its low of {fmt(low.median)} "
                 f"(steps {low.first_step}-{low.last_step}) to {fmt(end)} at step {last_step}")
        step = verdict.onset_step
    else:
        title = (f"Loss oscillating wildly from step {verdict.onset_step} (a typical step changes it "
                 f"{_times(verdict.volatility)}) with no net progress: {fmt(start)} -> {fmt(end)}")
        step = verdict.onset_step
    if lr_low and lr_end and lr_end > 1.5 * lr_low:
        title += f"; the learning rate rose from {fmt(lr_low)} to {fmt(lr_end)}"
    lrs = tl.lrs_between(series[0][0], last_step)
    fixes: list[Fix] = []
    lower = lower_learning_rate(tl, ref_step, 5.0 if trend else 10.0)
    if lower is not None:
        where = "where the loss was lowest" if trend else "where the swings began"
        lower.text += f" That is the learning rate in force {where} (step {ref_step})."
        fixes.append(lower)
    warmup = add_warmup(tl, len(series))
    if warmup is not None:
        fixes.append(warmup)
    constant = bool(lrs) and max(lrs) <= 1.01 * min(lrs)
    if trend and constant and low.last_step > series[0][0]:
        fixes.append(_decay(last_step))
    clip = clip_gradients(tl, ref_step if trend else None)
    if clip is not None:
        fixes.append(clip)
    yield finding_for(
        "divergence",
        title,
        step=step,
        epoch=next((r.epoch for r in tl.steps if r.step == step), None),
        evidence={
            "criterion": verdict.criterion,
            "start_loss": start,
            "min_smoothed_loss": low.median,
            "min_at_steps": [low.first_step, low.last_step],
            "final_smoothed_loss": end,
            "ratio": ratio,
            "onset_step": verdict.onset_step,
            "volatility": verdict.volatility,
            "window": verdict.window,
            "required_rise": verdict.factor,
            "lr": lr_low,
            "lr_at_min": tl.lr_at(low.last_step),
            "lr_at_end": lr_end,
            "lr_range": [min(lrs), max(lrs)] if lrs else None,
            "smoothed_loss": [[b.last_step, b.median] for b in verdict.blocks],
            "loss_history": thin(series),
        },
        fixes=fixes,
    )


def _times(volatility: float) -> str:
    return f"{nice(math.exp(volatility)):g}x"


def _decay(steps: int) -> Fix:
    total = max(1, steps + 1)
    return Fix(
        "decay_learning_rate",
        "The learning rate stayed constant while the loss climbed back: decay it over the run, so the "
        f"late steps are small (cosine annealing over the {total} steps).",
        {"T_max": total},
        f"scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={total})\n"
        "# scheduler.step() after each optimizer.step()",
    )
