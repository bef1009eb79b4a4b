"""What the GAN rules share: the two models, their loss series and the optimizers that train them."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from ..timeline import Timeline


@dataclass
class Pair:
    generator: str
    discriminator: str
    g_loss: list[tuple[int, float]]
    d_loss: list[tuple[int, float]]
    g_optimizer: dict[str, Any] | None
    d_optimizer: dict[str, Any] | None


def optimizer_of(tl: Timeline, model: str) -> dict[str, Any] | None:
    """The optimizer entry (Roles.optimizers) that holds `model` alone, the first one."""
    return next((e for e in tl.roles.optimizers if e.get("models") == [model]), None)


def pair(tl: Timeline) -> Pair | None:
    """The generator and discriminator with the loss series their optimizers stepped on; None
    when the run is not a GAN (no flow from one model into another)."""
    roles = tl.roles
    if roles.generator is None or roles.discriminator is None:
        return None
    series = tl.model_loss_series()
    g_opt, d_opt = optimizer_of(tl, roles.generator), optimizer_of(tl, roles.discriminator)
    g = series.get(g_opt["key"], []) if g_opt else []
    d = series.get(d_opt["key"], []) if d_opt else []
    finite = [(s, v) for s, v in g if math.isfinite(v)], [(s, v) for s, v in d if math.isfinite(v)]
    return Pair(roles.generator, roles.discriminator, finite[0], finite[1], g_opt, d_opt)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def ends(series: list[tuple[int, float]], share: float, least: int) -> tuple[list[float], list[float]]:
    """The first and the last `share` of a series' values, at least `least` each."""
    n = max(least, int(len(series) * share))
    values = [v for _, v in series]
    return values[:n], values[-n:]
