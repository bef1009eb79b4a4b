"""Rules: pure functions of a timeline that make findings. One diagnosis per module."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from ..findings import Finding
from ..timeline import Timeline
from . import (  # noqa: F401
    amp_overflow,
    dataloader_bottleneck,
    dead_units,
    divergence,
    double_softmax,
    eval_mode_missing,
    exploding_gradients,
    frozen_parameters,
    loss_plateau,
    memory_leak,
    memory_pressure,
    missing_zero_grad,
    nonfinite_gradient,
    nonfinite_loss,
    out_of_memory,
    overfitting,
    saturated_activations,
    script_error,
    unnormalized_input,
    vanishing_gradients,
)
from .base import REGISTRY, NotEvaluated, Param, Rule, rule

__all__ = ["REGISTRY", "NotEvaluated", "Param", "Rule", "rule", "all_rules", "evaluate", "Evaluation"]


def all_rules() -> list[Rule]:
    return list(REGISTRY.values())


@dataclass
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: dict[str, str] = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)


def evaluate(timeline: Timeline, config: Config) -> Evaluation:
    """Run every enabled rule; a rule that fails is contained and reported, never raised."""
    result = Evaluation()
    for r in all_rules():
        if r.code in config.disabled:
            continue
        try:
            result.findings.extend(r.run(timeline, config.params_for(r)))
        except NotEvaluated as why:
            result.not_evaluated[r.code] = str(why)
        except Exception as exc:  # a bug in a rule must not hide the other diagnoses
            result.internal_errors.append(f"rule {r.code} failed: {type(exc).__name__}: {exc}")
    result.findings.sort(key=lambda f: (-f.severity, f.step if f.step is not None else 1 << 62))
    return result
