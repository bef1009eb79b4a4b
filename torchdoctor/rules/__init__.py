"""Rules: pure functions of a timeline that make findings. One diagnosis per module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..findings import Finding
from ..timeline import Timeline
from . import (  # noqa: F401
    amp_clip_before_unscale,
    amp_overflow,
    causes,
    class_imbalance,
    data_leakage,
    dataloader_bottleneck,
    ddp_out_of_sync,
    dead_units,
    discriminator_overpowering,
    divergence,
    double_sigmoid,
    double_softmax,
    eval_mode_missing,
    exploding_gradients,
    fake_not_detached,
    frozen_parameters,
    healed,
    labels_misaligned,
    loss_plateau,
    memory_leak,
    memory_pressure,
    missing_zero_grad,
    mode_collapse,
    nonfinite_gradient,
    nonfinite_loss,
    optimizer_holds_other_model,
    optimizer_no_update,
    out_of_memory,
    overfitting,
    saturated_activations,
    scheduler_misuse,
    script_error,
    train_mode_missing,
    unnormalized_input,
    vanishing_gradients,
)
from .base import NotEvaluated, Param, Rule, rule

__all__ = ["REGISTRY", "RULES", "NotEvaluated", "Param", "Rule", "Settings", "rule", "all_rules", "evaluate",
           "Evaluation"]

# The catalogue: every diagnosis, by code (the order findings of equal severity and step are listed in).
RULES: tuple[Rule, ...] = (
    amp_clip_before_unscale.amp_clip_before_unscale,
    amp_overflow.amp_overflow,
    class_imbalance.class_imbalance,
    data_leakage.data_leakage,
    dataloader_bottleneck.dataloader_bottleneck,
    ddp_out_of_sync.ddp_out_of_sync,
    dead_units.dead_units,
    discriminator_overpowering.discriminator_overpowering,
    divergence.divergence,
    double_sigmoid.double_sigmoid,
    double_softmax.double_softmax,
    eval_mode_missing.eval_mode_missing,
    exploding_gradients.exploding_gradients,
    fake_not_detached.fake_not_detached,
    frozen_parameters.frozen_parameters,
    healed.healed,
    labels_misaligned.labels_misaligned,
    loss_plateau.loss_plateau,
    memory_leak.memory_leak,
    memory_pressure.memory_pressure,
    missing_zero_grad.missing_zero_grad,
    mode_collapse.mode_collapse,
    nonfinite_gradient.nonfinite_gradient,
    nonfinite_loss.nonfinite_loss,
    optimizer_holds_other_model.optimizer_holds_other_model,
    optimizer_no_update.optimizer_no_update,
    out_of_memory.out_of_memory,
    overfitting.overfitting,
    saturated_activations.saturated_activations,
    scheduler_misuse.scheduler_misuse,
    script_error.script_error,
    train_mode_missing.train_mode_missing,
    unnormalized_input.unnormalized_input,
    vanishing_gradients.vanishing_gradients,
)
REGISTRY: dict[str, Rule] = {r.code: r for r in RULES}
if len(REGISTRY) != len(RULES):
    raise ImportError("a finding code is declared by two rules")


class Settings(Protocol):
    """What evaluation needs of the configuration (config.Config): rules do not import it."""

    disabled: set[str]

    def params_for(self, rule: Rule) -> dict[str, float]: ...


def all_rules() -> list[Rule]:
    return list(RULES)


@dataclass
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: dict[str, str] = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)


def evaluate(timeline: Timeline, config: Settings) -> Evaluation:
    """Run every enabled rule, then link the findings one explains to another (rules/causes.py),
    cause first. A rule that fails is contained and reported, never raised; so is a failure of the
    linking, and the findings then come out unlinked, worst first."""
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
    try:
        result.findings = causes.link(result.findings, timeline)
    except Exception as exc:  # a bug in the linking must not cost the diagnoses themselves
        result.internal_errors.append(f"linking causes failed: {type(exc).__name__}: {exc}")
    try:
        result.findings = healed.settle(result.findings, timeline)
    except Exception as exc:
        result.internal_errors.append(f"settling what --heal answered failed: {type(exc).__name__}: {exc}")
    return result
