"""divergence: the training loss trends up, or swings wildly without progress, while staying finite."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..findings import Finding, Fix, Severity
from ..formatting import fmt
from ..timeline import Phase, Timeline
from ._dynamics import (
    GAN_LOSSES,
    Block,
    block_medians,
    block_noise,
    block_window,
    level,
    log_volatility,
    med3,
    phase_evidence,
    phase_title,
    progress,
)
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
    "jump_factor": Param(30.0, "blow-up: the loss multiplied by at least this within one step"),
    "jump_over_start": Param(10.0, "blow-up: ... and at least this times the phase's first loss"),
    "early_steps": Param(5, "blow-up: ... or the loss at that multiple of its first within this many steps"),
    "max_update_ratio": Param(1.0, "blow-up: a step that moved the weights by more than this of their size"),
    "recovered": Param(0.5, "a blow-up after which the loss ended below this fraction of its start did not hurt: "
                       "no finding"),
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
    """The verdict on a finite loss series (one phase), or None when it did not diverge (also used
    by loss_plateau, so that a diverging run is not called a plateau as well). Its first loss is
    the prior: a loss that ends above where it started diverged, whatever its first window was."""
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
    first = series[0][1]
    if first > 0 and all(b.median >= factor * first for b in blocks[-sustain:]):
        # Above its own start to the end: the first window was already high (a step-1 blow-up).
        onset_step = next(s for s, v in series if v >= factor * first)
        return Verdict("above_start", window, blocks, Block(series[0][0], series[0][0], first), first, end,
                       volatility, onset_step, factor)
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


@rule("divergence", Severity.ERROR, "The loss blows up, trends up or oscillates wildly (learning rate too high)",
      PARAMS)
def divergence(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: a training loss that stays finite but diverges. Each phase of the run (its
    start, a new optimizer, other parameters trained, another dataset, a learning-rate restart:
    see Timeline.phases) is judged on its own, and the finding names its phase: the loss of a new
    head on new classes starts high again, and that is no divergence. The priors are the phase's
    own first loss. Four criteria, the first that holds:

    - blowup (needs no history): within one step the loss multiplied by `jump_factor` (30x) to at
      least `jump_over_start` (10x) the phase's first loss, or climbed to that multiple within
      its first `early_steps` (5) steps, or a sampled step moved the weights
      by more than `max_update_ratio` (1x) their own size and the loss stayed above twice its
      start; and the loss did not come back below `recovered` (half) its start by the end (a
      blow-up the run recovered from hurt nothing). A learning rate far too high shows here at
      step 1, whatever BatchNorm does to the gradient norm.
    - trend: the loss is smoothed by medians over consecutive windows of max(5, steps/20) steps,
      so a noisy mini-batch or an isolated spike moves nothing; each of the last
      `sustain_windows` (3) window medians is at least `rise_factor` (1.5x) the lowest (median
      of three neighbouring windows), which came before them. In a short, very noisy run the
      factor grows to three standard deviations of a window median (estimated from the
      step-to-step spread), so noise alone does not make a trend. The finding's step is where
      the smoothed loss first stood that high after its low; the low itself, and the learning
      rate in force there, are in the evidence.
    - above_start: the last windows all stand that factor above the phase's first loss: the
      loss climbed above where it started and stayed there, though its first window was
      already high (a blow-up at step 1 makes the first window the run's worst).
    - oscillation: the loss swings wildly from step to step (median |log(loss_t / loss_t-1)|
      at or above `oscillation`, 0.8: a typical step multiplies or divides the loss by 2.2)
      and the run makes no net progress: the typical loss of its last quarter is less than
      `min_progress` (5%) below that of its start, and no robust trend line through the
      windows falls that much either. Ordinary mini-batch noise (a 20-40% spread) is a
      quarter to a half of that threshold; batches of one or two samples can reach it, so
      this criterion waits for `min_oscillation_steps` (100) steps.

    No trend, above-start or oscillation verdict before `min_steps` (30) finite losses in a
    phase, and no verdict at all on losses that go negative. Rises
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
    force where the loss was lowest; after a blow-up, back to a usual value for the optimizer
    when a tenth would still be far too high), warm it up over the first steps (unless the run
    already does), decay it when it was constant, and clip gradients (`max_norm` from the steps
    before the low).
    """
    if tl.task == "generation":
        raise NotEvaluated(GAN_LOSSES)
    if tl.events_of("nonfinite_loss"):
        return  # nonfinite_loss explains this run; a second finding would only repeat it
    series = tl.finite_losses()
    if any(v < 0 for _, v in series):
        raise NotEvaluated("the training loss takes negative values: a rise cannot be measured as a ratio")
    phases = tl.phases()
    judged = 0
    for index, _, part in tl.by_phase(series):
        blowup = _blowup(tl, part, p)
        verdict = divergence_verdict(part, p) if len(part) >= int(p["min_steps"]) else None
        judged += len(part) >= int(p["min_steps"]) or blowup is not None
        if blowup is not None and not _recovered(part, p) and (verdict is None or verdict.onset_step >= blowup[0]):
            yield _blowup_finding(tl, part, blowup, p, index, phases)
            return
        if verdict is not None:
            yield _finding(tl, part, verdict, index, phases)
            return
    if not judged:
        needed = int(p["min_steps"])
        raise NotEvaluated(f"{len(series)} finite training losses; needs at least {needed}")


def _prior_evidence(tl: Timeline) -> dict[str, object]:
    """What the priors say beside the training loss: the chance level, and the last validation loss
    against it (orders of magnitude above the training loss, or above chance, is a run gone wrong)."""
    out: dict[str, object] = {}
    chance = tl.prior.chance if tl.prior else None
    if chance:
        out["chance_loss"] = chance
    val = [e.loss for e in tl.validation() if e.loss is not None and math.isfinite(e.loss)]
    if val:
        out["last_val_loss"] = val[-1]
        if chance:
            out["val_over_chance"] = val[-1] / chance
    return out


def _blowup(tl: Timeline, part: list[tuple[int, float]], p: dict[str, float]) -> tuple[int, float, str] | None:
    """(step, factor, how) of a one-step blow-up, which needs no history: the loss multiplied by
    `jump_factor` within a step to `jump_over_start` times the phase's first loss, or a step that
    moved the weights by more than their own size and left the loss above its start."""
    first = part[0][1]
    if first <= 0:
        return None
    for (_, a), (step, b) in zip(part, part[1:], strict=False):
        if a > 0 and b >= p["jump_factor"] * a and b >= p["jump_over_start"] * first:
            return step, b / a, "jump"
    for step, v in part[1:int(p["early_steps"]) + 1]:  # a climb over the first steps, no single jump
        if v >= p["jump_over_start"] * first:
            return step, v / first, "early_rise"
    steps = {s for s, _ in part}
    for rec in tl.steps:
        ratio = rec.update_ratio
        if rec.step in steps and ratio is not None and ratio > p["max_update_ratio"]:
            after = [v for s, v in part if s > rec.step][:3]
            if after and min(after) > 2 * first:
                return rec.step + 1, ratio, "update"
    return None


def _recovered(part: list[tuple[int, float]], p: dict[str, float]) -> bool:
    """The loss ended well below where the phase started: whatever blew up, it did not hurt."""
    end = level([v for _, v in part[-max(1, len(part) // 4):]])
    return end < p["recovered"] * part[0][1]


def _blowup_finding(tl: Timeline, part: list[tuple[int, float]], blowup: tuple[int, float, str],
                    p: dict[str, float], index: int, phases: list[Phase]) -> Finding:
    step, factor, how = blowup
    first = part[0][1]
    before = tl.lr_at(step - 1)
    peak_step, peak = max(part, key=lambda sv: sv[1])
    end = level([v for _, v in part[-max(1, len(part) // 4):]])
    ratio = max((r.update_ratio for r in tl.steps if r.update_ratio is not None and r.step < step + 1), default=None)
    at = fmt(dict(part).get(step))
    what = {"jump": f"the loss jumped {fmt(factor)}x in one step, to {at} at step {step}",
            "early_rise": f"within {step - part[0][0]} steps the loss rose {fmt(factor)}x, to {at}",
            }.get(how, f"one step moved the weights by {fmt(factor)}x their own size")
    title = (f"Loss blew up at step {step}: {what} (it started at {fmt(first)}), and ended at {fmt(end)}, "
             f"{'above' if end > first else 'no better than'} its start" + phase_title(index, phases))
    fixes: list[Fix] = []
    lower = lower_learning_rate(tl, step - 1, 10.0, to_default=True)
    if lower is not None:
        lower.text += f" The blow-up came at the first steps, with the learning rate in force at step {step - 1}."
        fixes.append(lower)
    warmup = add_warmup(tl, len(part))
    if warmup is not None:
        fixes.append(warmup)
    clip = clip_gradients(tl, step)
    if clip is not None:
        fixes.append(clip)
    return finding_for(
        "divergence", title, step=step, epoch=next((r.epoch for r in tl.steps if r.step == step), None),
        evidence={"criterion": "blowup", "how": how, "factor": factor, "start_loss": first,
                  "loss_at_blowup": dict(part).get(step), "peak_loss": peak, "peak_step": peak_step,
                  "final_level": end, "max_update_ratio": ratio, "lr": before,
                  "loss_history": thin(part), **phase_evidence(index, phases), **_prior_evidence(tl)},
        fixes=fixes,
    )


def _finding(tl: Timeline, series: list[tuple[int, float]], verdict: Verdict, index: int,
             phases: list[Phase]) -> Finding:
    low, start, end = verdict.lowest, verdict.start, verdict.end
    trend = verdict.criterion in ("trend", "above_start")
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
    elif verdict.criterion == "above_start":
        title = (f"Loss diverged: it started at {fmt(start)} (step {low.first_step}), rose above it at step "
                 f"{verdict.onset_step} and stayed there, {fmt(end)} at step {last_step}")
    else:
        title = (f"Loss oscillating wildly from step {verdict.onset_step} (a typical step changes it "
                 f"{_times(verdict.volatility)}) with no net progress: {fmt(start)} -> {fmt(end)}")
    step = verdict.onset_step
    if lr_low and lr_end and lr_end > 1.5 * lr_low:
        title += f"; the learning rate rose from {fmt(lr_low)} to {fmt(lr_end)}"
    title += phase_title(index, phases)
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
    evidence = {
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
    }
    if len(phases) > 1:
        evidence |= phase_evidence(index, phases)
    evidence |= _prior_evidence(tl)
    return finding_for(
        "divergence",
        title,
        step=step,
        epoch=next((r.epoch for r in tl.steps if r.step == step), None),
        evidence=evidence,
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
