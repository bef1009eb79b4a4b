"""Root causes: which finding explains which, so the report leads with the cause.

A missing `zero_grad()` makes the loss diverge; a gradient explosion overflows the loss; a NaN
makes every later statistic meaningless. Shown side by side, the symptom's fix ("lower the
learning rate") reads as important as the cause's ("call zero_grad"). Linking gives each
consequence `caused_by`, the code of the finding that explains it, and orders the findings so
each cause leads and what it explains follows it; the JSON keeps every finding.

The relations are data (RELATIONS, one row per cause and the codes it explains), each with its
condition and a one-line reason, which the report shows under the consequence. Pure functions of
the findings and the timeline, like every rule: no torch, and the findings handed in are not
changed (linked copies come back), so a failure here leaves the unlinked findings as they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..findings import Finding
from ..timeline import Timeline

AT_OR_AFTER = "at_or_after"  # both findings have a step and the consequence's is at or after the cause's
ANYWHERE = "anywhere"  # a cause that holds for the whole run: any step, or none
EARLY = "early"  # a cause within the first EARLY_STEPS steps explains what is judged over the whole run (no step)
EARLY_STEPS = 5

LATE = 1 << 62  # a finding with no step is listed after those with one, as the rules' order has it


@dataclass(frozen=True)
class Relation:
    """`cause` explains the findings of the codes in `explains` when `when` holds between their steps.

    `same_phase`: only within the cause's phase (a later phase, with its own optimizer, parameters
    or data, is judged on its own). `unless`: evidence values of the consequence that rule the
    relation out (a NaN that was in the input batch was not made by the gradients)."""

    cause: str
    explains: frozenset[str]
    when: str
    reason: str
    same_phase: bool = False
    unless: Mapping[str, Any] = field(default_factory=dict)

    def holds(self, cause: Finding, consequence: Finding, tl: Timeline) -> bool:
        if cause.code != self.cause or consequence.code not in self.explains or cause is consequence:
            return False
        if any(consequence.evidence.get(k) == v for k, v in self.unless.items()):
            return False
        if self.when == ANYWHERE:
            return True
        if self.when == EARLY:
            return consequence.step is None and cause.step is not None and cause.step <= EARLY_STEPS
        if cause.step is None or consequence.step is None or consequence.step < cause.step:
            return False
        return not self.same_phase or tl.phase_of(cause.step)[0] == tl.phase_of(consequence.step)[0]


# What a NaN leaves behind: once the loss or the weights are NaN/Inf, the statistics after it say
# nothing of their own. Memory findings are not among them: a NaN costs no memory.
AFTER_NAN = frozenset({"dead_units", "saturated_activations", "vanishing_gradients", "loss_plateau", "divergence"})

RELATIONS: tuple[Relation, ...] = (
    Relation("missing_zero_grad", frozenset({"divergence", "exploding_gradients", "loss_plateau"}), ANYWHERE,
             "unreset gradients add up, so every step is larger"),
    Relation("missing_zero_grad", frozenset({"dead_units", "saturated_activations", "vanishing_gradients"}), ANYWHERE,
             "unreset gradients add up to updates that break the units"),
    Relation("unnormalized_input", frozenset({"saturated_activations", "exploding_gradients"}), ANYWHERE,
             "raw inputs drive the first layer out of range"),
    Relation("frozen_parameters", frozenset({"loss_plateau"}), ANYWHERE,
             "weights no optimizer updates cannot lower the loss"),
    Relation("optimizer_holds_other_model", frozenset({"frozen_parameters"}), ANYWHERE,
             "the second optimizer was meant for these"),
    Relation("discriminator_overpowering", frozenset({"vanishing_gradients", "exploding_gradients"}), ANYWHERE,
             "the generator gets no useful gradient"),
    Relation("double_softmax", frozenset({"loss_plateau", "vanishing_gradients"}), ANYWHERE,
             "a log-softmax of probabilities flattens the gradient"),
    Relation("double_sigmoid", frozenset({"loss_plateau", "vanishing_gradients", "saturated_activations"}), ANYWHERE,
             "a sigmoid of probabilities caps how far the loss can fall"),
    Relation("amp_clip_before_unscale", frozenset({"loss_plateau", "vanishing_gradients"}), ANYWHERE,
             "the clip shrinks every gradient by the loss scale"),
    Relation("scheduler_misuse", frozenset({"loss_plateau"}), ANYWHERE,
             "the schedule ran the learning rate down to nothing"),
    Relation("optimizer_no_update", frozenset({"loss_plateau", "frozen_parameters"}), ANYWHERE,
             "steps that change no weight cannot lower the loss"),
    Relation("labels_misaligned", frozenset({"overfitting", "loss_plateau"}), ANYWHERE,
             "labels apart from their inputs: memorized, never learned"),
    Relation("exploding_gradients", frozenset({"nonfinite_loss", "nonfinite_gradient"}), AT_OR_AFTER,
             "the exploding gradients overflowed to NaN/Inf", unless={"origin": "input"}),
    Relation("exploding_gradients", frozenset({"dead_units", "saturated_activations", "vanishing_gradients"}),
             AT_OR_AFTER, "huge updates threw the units out of their range"),
    Relation("nonfinite_gradient", frozenset({"nonfinite_loss"}), AT_OR_AFTER,
             "the NaN/Inf gradients went into the weights",
             unless={"origin": "input"}),
    Relation("nonfinite_gradient", AFTER_NAN, AT_OR_AFTER,
             "NaN/Inf weights make later statistics meaningless"),
    Relation("nonfinite_loss", AFTER_NAN, AT_OR_AFTER,
             "after a NaN/Inf loss later statistics are meaningless"),
    Relation("divergence", frozenset({"dead_units", "saturated_activations", "vanishing_gradients"}), AT_OR_AFTER,
             "the loss blow-up killed the units and their gradients"),
    Relation("divergence", frozenset({"dead_units", "saturated_activations", "vanishing_gradients"}), EARLY,
             "a blow-up in the first steps broke the units and gradients"),
    Relation("divergence", frozenset({"loss_plateau"}), AT_OR_AFTER,
             "the blow-up threw the weights out of range", same_phase=True),
)


def _check_acyclic(relations: Sequence[Relation]) -> None:
    """Refuse a table in which a code explains itself, directly or through others: a consequence
    could then be listed as its own cause's cause."""
    edges: dict[str, set[str]] = {}
    for r in relations:
        edges.setdefault(r.cause, set()).update(r.explains)
    for start in edges:
        seen: set[str] = set()
        todo = list(edges[start])
        while todo:
            code = todo.pop()
            if code == start:
                raise ImportError(f"rules/causes.py: the relations make a circle through {start}")
            if code not in seen:
                seen.add(code)
                todo.extend(edges.get(code, ()))


_check_acyclic(RELATIONS)


def link(findings: Sequence[Finding], tl: Timeline, relations: Sequence[Relation] = RELATIONS) -> list[Finding]:
    """The findings of one evaluation, linked (`caused_by`, `cause_reason`) and in report order.

    Each consequence points at the earliest applicable cause (by step; a finding with no step is
    there from the start; ties in the table's order). Severities are never changed. The findings
    given are left as they were: linked copies come back."""
    base = sorted(findings, key=lambda f: (-f.severity, _step(f)))
    parent, reason = _parents(base, tl, relations)
    linked = [dataclasses.replace(f, caused_by=base[parent[i]].code if i in parent else None,
                                  cause_reason=reason.get(i)) for i, f in enumerate(base)]
    return [linked[i] for i in order(base, parent)]


def regroup(findings: Sequence[Finding], key: Callable[[Finding], Any] | None = None) -> list[Finding]:
    """Findings linked already (read back from reports, gathered from several ranks) in report
    order, each consequence under its cause: `caused_by` names the nearest finding of that code
    with the same `evidence.rank`. `key` orders them before grouping (worst first by default)."""
    base = sorted(findings, key=key or (lambda f: (-f.severity, _step(f))))
    parent: dict[int, int] = {}
    for i, f in enumerate(base):
        same = [j for j, c in enumerate(base) if j != i and f.caused_by and c.code == f.caused_by
                and c.evidence.get("rank") == f.evidence.get("rank")]
        for j in sorted(same, key=lambda j: (j > i, abs(j - i))):  # the nearest before it, else after it
            if i not in _chain(j, parent, itself=True):
                parent[i] = j
                break
    return [base[i] for i in order(base, parent)]


def _step(f: Finding) -> int:
    return f.step if f.step is not None else LATE


def _parents(findings: Sequence[Finding], tl: Timeline,
             relations: Sequence[Relation]) -> tuple[dict[int, int], dict[int, str]]:
    """Index of each consequence -> index of its cause, and -> the relation's reason."""
    parent: dict[int, int] = {}
    reason: dict[int, str] = {}
    for i, consequence in enumerate(findings):
        candidates = [(findings[j].step if findings[j].step is not None else -1, n, j, r.reason)
                      for n, r in enumerate(relations) for j, cause in enumerate(findings)
                      if j != i and r.holds(cause, consequence, tl)]
        for _, _, j, why in sorted(candidates):
            if i not in _chain(j, parent, itself=True):  # never a circle, whatever the table says
                parent[i], reason[i] = j, why
                break
    return parent, reason


def order(findings: Sequence[Finding], parent: Mapping[int, int]) -> list[int]:
    """Indices of `findings` in report order. A group is a root cause and everything under it;
    groups by the worst severity in them, then by the root's step (the given order breaks ties);
    within a group the root first, then its consequences by step, each after its own cause."""
    groups: dict[int, list[int]] = {}
    for i in range(len(findings)):
        groups.setdefault(_chain(i, parent, itself=True)[-1], []).append(i)
    ranked = sorted(groups, key=lambda r: (-max(findings[i].severity for i in groups[r]), _step(findings[r]), r))
    out: list[int] = []
    for r in ranked:
        pending = sorted((i for i in groups[r] if i != r),
                         key=lambda i: (_step(findings[i]), len(_chain(i, parent)), i))
        placed = {r}
        out.append(r)
        while pending:
            i = next((i for i in pending if parent.get(i) in placed), pending[0])
            pending.remove(i)
            placed.add(i)
            out.append(i)
    return out


def _chain(i: int, parent: Mapping[int, int], itself: bool = False) -> list[int]:
    """The causes above `i`, nearest first, its root last (`i` first when `itself`)."""
    out = [i] if itself else []
    while i in parent and parent[i] not in out and parent[i] != i:
        i = parent[i]
        out.append(i)
    return out
