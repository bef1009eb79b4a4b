"""Smoothing statistics for loss curves: robust to the noise of a real run's mini-batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..timeline import Phase
from ._numbers import median

# Why the loss-curve rules leave a GAN alone: its losses are a game, not a descent.
GAN_LOSSES = ("a GAN's losses are a game between two models, not a descent: judged by discriminator_overpowering "
              "and mode_collapse instead")
PHASE_REASONS = {"start": "the start", "new_optimizer": "a new optimizer", "trained_parameters":
                 "other parameters trained", "new_dataset": "another dataset", "lr_restart": "a learning-rate restart"}


def phase_title(index: int, phases: Sequence[Phase]) -> str:
    """What a finding's title adds to name its phase, when the run has more than one."""
    if len(phases) < 2:
        return ""
    phase = phases[index]
    why = PHASE_REASONS.get(phase.reason, phase.reason)
    return f" (phase {index + 1} of {len(phases)}, from step {phase.step}: {why})"


def phase_evidence(index: int, phases: Sequence[Phase]) -> dict[str, object]:
    return {"phase": index + 1, "phase_start": phases[index].step, "phase_reason": phases[index].reason,
            "phases": len(phases)}


@dataclass(frozen=True)
class Block:
    """A run of consecutive steps summarised by its median loss."""

    first_step: int
    last_step: int
    median: float


def block_window(n: int, min_window: int = 5, blocks: int = 20) -> int:
    """Steps per block: about `blocks` blocks over the run, never fewer than `min_window` steps."""
    return max(min_window, n // blocks)


def block_medians(series: Sequence[tuple[int, float]], window: int) -> list[Block]:
    """Consecutive, non-overlapping blocks of `window` steps, the last one taking the remainder, so
    the end of the run is always in a full block. A median ignores the odd spiky batch entirely."""
    n = len(series)
    count = n // window
    out = []
    for i in range(count):
        lo, hi = i * window, (n if i == count - 1 else (i + 1) * window)
        chunk = series[lo:hi]
        out.append(Block(chunk[0][0], chunk[-1][0], median([v for _, v in chunk])))
    return out


def med3(values: Sequence[float]) -> list[float]:
    """Centred median of three (the mean of two at either end): one outlying evaluation moves it
    not at all, a trend passes through."""
    n = len(values)
    if n < 3:
        return list(values)
    return [median(values[max(0, i - 1): i + 2]) for i in range(n)]


def log_volatility(values: Sequence[float]) -> float:
    """Median |log(l_t / l_(t-1))| over consecutive positive losses: 0.1 is a 10% step-to-step
    wobble, 0.69 a loss that doubles or halves from one step to the next."""
    steps = [abs(math.log(b / a)) for a, b in zip(values, values[1:], strict=False) if a > 0 and b > 0]
    return median(steps) if steps else math.nan


def noise_sigma(values: Sequence[float]) -> float:
    """The step-to-step noise as a log-normal spread: for independent noise of spread s the median
    |log(l_t / l_(t-1))| is 0.954 s."""
    return log_volatility(values) / 0.954


def block_noise(values: Sequence[float], window: int) -> float:
    """Spread (log) of a block median of `window` steps from noise alone: 1.25 s / sqrt(window)."""
    sigma = noise_sigma(values)
    return 1.25 * sigma / math.sqrt(window) if math.isfinite(sigma) else 0.0


@dataclass(frozen=True)
class Progress:
    """How far the loss came over a run, each end summarised by a median over many steps."""

    start: float  # the larger of: the level of the first window, the level of the first quarter
    end: float  # the level of the last quarter
    quarter: int  # steps in a quarter
    first: float  # the median of the first 5 steps
    first_noise: float  # the spread (log) of that median from noise alone
    trend_drop: float  # the fall over the run of a robust (Theil-Sen) line through the window medians
    noise: float  # the spread (log) of start/end from noise alone

    @property
    def improvement(self) -> float:
        return 1 - self.end / self.start if self.start > 0 else 0.0

    def improved(self, min_improvement: float, doubt: float = 1.0) -> bool:
        """Whether the loss came down by `min_improvement`, by any of three measures: the start levels
        against the end; the first steps, when they stand significantly above (a run that converged
        in its first few steps); the trend line (a slow, steady descent)."""
        if self.start <= 0 or self.end <= 0:
            return self.start > self.end
        # The benefit of the doubt: `doubt` standard deviations of noise count as progress.
        margin = doubt * self.noise
        return (self.start >= self.end * math.exp(-margin) / (1 - min_improvement)
                or self.first >= self.end * math.exp(2 * self.first_noise) / (1 - min_improvement)
                or self.trend_drop >= min_improvement)


def theil_sen_drop(blocks: Sequence[Block]) -> float:
    """1 - exp(total change) of the median-of-slopes line through log(window median) against step."""
    points = [((b.first_step + b.last_step) / 2, math.log(b.median)) for b in blocks if b.median > 0]
    if len(points) < 3:
        return 0.0
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:] if x2 > x1]
    if not slopes:
        return 0.0
    return 1 - math.exp(median(slopes) * (points[-1][0] - points[0][0]))


def level(values: Sequence[float], trim: float = 0.2) -> float:
    """The typical loss of a stretch: the geometric mean of the middle 60% of the values. Unlike a
    median it stays put when the loss flips between two levels; unlike a mean a spike moves it not."""
    if not values or min(values) <= 0:
        return median(values)
    logs = sorted(math.log(v) for v in values)
    cut = int(len(logs) * trim)
    kept = logs[cut: len(logs) - cut] or logs
    return math.exp(sum(kept) / len(kept))


def progress(series: Sequence[tuple[int, float]]) -> Progress:
    """Start and end levels robust to noise: a quarter of the run is many steps, and the first
    window catches a run that converged within its first quarter."""
    values = [v for _, v in series]
    n = len(values)
    window = block_window(n)
    quarter = max(window, n // 4)
    start = max(level(values[:window]), level(values[:quarter]))
    first = median(values[:5])
    return Progress(start, level(values[-quarter:]), quarter, first, block_noise(values, min(5, n)),
                    theil_sen_drop(block_medians(series, window)), math.sqrt(2) * block_noise(values, quarter))
