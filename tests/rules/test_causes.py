"""Root causes on hand-made findings: which finding explains which, and the order the report
gives them (each cause leads, what it explains follows it). Every relation of the table once
where its condition holds (linked, cause first) and once where it does not (left alone)."""

from __future__ import annotations

import math

import pytest

from tests.rules.timelines import Event, make_timeline
from torchdoctor.config import Config
from torchdoctor.findings import Finding, Severity
from torchdoctor.rules import REGISTRY, causes, evaluate
from torchdoctor.rules.causes import ANYWHERE, AT_OR_AFTER, EARLY, RELATIONS, Relation, link
from torchdoctor.timeline import Phase, Timeline


def run(steps: int = 60) -> Timeline:
    return make_timeline([1.0] * steps)


def made(code: str, step: int | None, severity: Severity | None = None, **evidence) -> Finding:
    """A finding as its rule would make it: the rule's declared severity unless told."""
    severity = severity if severity is not None else REGISTRY[code].severity if code in REGISTRY else Severity.WARNING
    return Finding(code, severity, f"{code} at step {step}", step=step, evidence=dict(evidence))


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def links(findings: list[Finding]) -> dict[str, str | None]:
    return {f.code: f.caused_by for f in findings}


PAIRS = [(r, code) for r in RELATIONS for code in sorted(r.explains)]
PAIR_IDS = [f"{r.cause}->{code}" for r, code in PAIRS]


@pytest.mark.parametrize(("relation", "code"), PAIRS, ids=PAIR_IDS)
def test_each_relation_links_its_consequence_under_its_cause(relation, code):
    """The consequence after its cause (before it too, for a cause of the whole run): it names the
    cause and why, it is listed right after it, and no severity changes."""
    cause = made(relation.cause, 2 if relation.when == EARLY else 10)
    consequence = made(code, {ANYWHERE: 4, EARLY: None}.get(relation.when, 12))
    for given in ([cause, consequence], [consequence, cause]):
        out = link(given, run())
        assert codes(out) == [relation.cause, code]
        assert out[1].caused_by == relation.cause and out[1].cause_reason == relation.reason
        assert out[0].caused_by is None and out[0].cause_reason is None
        assert [f.severity for f in out] == [cause.severity, consequence.severity]


@pytest.mark.parametrize(("relation", "code"), [(r, c) for r, c in PAIRS if r.when == AT_OR_AFTER],
                         ids=[i for (r, _), i in zip(PAIRS, PAIR_IDS, strict=True) if r.when == AT_OR_AFTER])
def test_a_consequence_before_its_cause_is_not_explained_by_it(relation, code):
    """The healthy twin: the same two codes, the symptom seen before the cause (dead units at step 4,
    the divergence from step 10): both stand on their own, in the rules' order (worst first)."""
    out = link([made(relation.cause, 10), made(code, 4)], run())
    assert links(out) == {relation.cause: None, code: None}
    assert [(-f.severity, f.step) for f in out] == sorted((-f.severity, f.step) for f in out)


def test_the_readme_example_leads_with_the_explosion_not_the_nan():
    """nonfinite_loss is critical and exploding_gradients an error, but the explosion came first and
    made the NaN: the explosion leads, its fixes (clip, lower the lr) read first."""
    nan = made("nonfinite_loss", 26, origin="loss", gradients_were_exploding=True)
    explode = made("exploding_gradients", 24)
    out = link([nan, explode], run())
    assert codes(out) == ["exploding_gradients", "nonfinite_loss"]
    assert out[1].caused_by == "exploding_gradients"
    assert out[1].severity is Severity.CRITICAL and out[0].severity is Severity.ERROR


def test_a_nan_in_the_input_batch_is_not_blamed_on_the_gradients():
    out = link([made("nonfinite_loss", 26, origin="input"), made("exploding_gradients", 24)], run())
    assert links(out) == {"nonfinite_loss": None, "exploding_gradients": None}
    assert codes(out) == ["nonfinite_loss", "exploding_gradients"]  # worst first, as before


def test_dead_units_after_a_divergence_are_its_consequence_and_before_it_are_not():
    diverged = made("divergence", 30)
    assert link([diverged, made("dead_units", 40)], run())[1].caused_by == "divergence"
    assert link([diverged, made("dead_units", 30)], run())[1].caused_by == "divergence"  # at its onset
    assert link([diverged, made("dead_units", 10)], run())[1].caused_by is None  # dead before it


def test_a_divergence_explains_a_plateau_of_its_own_phase_only():
    """A later phase (a new optimizer, a new head) is judged on its own: its plateau is not the
    earlier blow-up's; dead units are, whatever the phase (dead stays dead)."""
    tl = run()
    tl.phase_starts = [Phase(40, "optimizer")]
    diverged = made("divergence", 10)
    same = link([diverged, made("loss_plateau", 20)], tl)
    later = link([diverged, made("loss_plateau", 45), made("dead_units", 45)], tl)
    assert links(same)["loss_plateau"] == "divergence"
    assert links(later) == {"divergence": None, "loss_plateau": None, "dead_units": "divergence"}


def test_missing_zero_grad_explains_the_divergence_it_makes():
    """The symptom's fix (lower the learning rate) must not read before the cause's (zero_grad):
    missing_zero_grad holds for the whole run, so a plateau from step 0 is still its doing."""
    out = link([made("divergence", 2), made("missing_zero_grad", 1), made("loss_plateau", 0, Severity.INFO)], run())
    assert codes(out) == ["missing_zero_grad", "loss_plateau", "divergence"]  # under the cause, by step
    assert links(out) == {"missing_zero_grad": None, "divergence": "missing_zero_grad",
                          "loss_plateau": "missing_zero_grad"}


def test_a_chain_points_at_the_nearest_cause_and_is_ordered_under_the_root():
    """exploding gradients -> a NaN loss -> a flat loss: the plateau names the NaN (the explosion
    does not explain a plateau by itself), and the whole chain is listed under the explosion."""
    tl = run()
    explode, nan, plateau = made("exploding_gradients", 24), made("nonfinite_loss", 26), made("loss_plateau", 30)
    memory = made("memory_pressure", None, Severity.WARNING)
    out = link([memory, plateau, nan, explode], tl)
    assert codes(out) == ["exploding_gradients", "nonfinite_loss", "loss_plateau", "memory_pressure"]
    assert links(out) == {"exploding_gradients": None, "nonfinite_loss": "exploding_gradients",
                          "loss_plateau": "nonfinite_loss", "memory_pressure": None}


def test_the_earliest_applicable_cause_wins():
    """A plateau at step 50 that a divergence (step 30) and a NaN (step 40) could both explain, and
    weights no optimizer updates (step 2): the frozen weights came first."""
    found = [made("nonfinite_loss", 40), made("divergence", 30), made("loss_plateau", 50)]
    assert links(link(found, run()))["loss_plateau"] == "divergence"
    out = link(found + [made("frozen_parameters", 2)], run())
    assert links(out)["loss_plateau"] == "frozen_parameters"
    # the divergence and the NaN are not the frozen weights' doing: three groups, worst first
    assert codes(out) == ["nonfinite_loss", "frozen_parameters", "loss_plateau", "divergence"]


def test_groups_go_by_their_worst_finding_then_by_the_roots_step():
    """Raw inputs (a warning) that explode the gradients (an error) lead a group as bad as an error;
    a divergence alone at step 3 is an error too, but its step is later than the raw inputs'. A
    NaN gradient after the explosion makes that group critical: it goes first."""
    found = [made("divergence", 3), made("exploding_gradients", 5), made("unnormalized_input", 0),
             made("dataloader_bottleneck", None, Severity.INFO)]
    out = link(found, run())
    assert codes(out) == ["unnormalized_input", "exploding_gradients", "divergence", "dataloader_bottleneck"]
    assert {f.code: f.severity for f in out} == {f.code: f.severity for f in found}
    found = [made("nonfinite_loss", 2, origin="input"), made("divergence", 1)] + found[1:]
    out = link(found + [made("nonfinite_gradient", 50)], run())
    assert codes(out) == ["unnormalized_input", "exploding_gradients", "nonfinite_gradient", "nonfinite_loss",
                          "divergence", "dataloader_bottleneck"]
    assert links(out)["nonfinite_gradient"] == "exploding_gradients"  # a chain under the raw inputs


def test_a_finding_without_a_step_is_explained_only_by_a_relation_that_says_so():
    tl = run()
    assert link([made("divergence", 30), made("dead_units", None)], tl)[1].caused_by is None
    # a blow-up in the first steps explains what is judged over the whole run
    assert link([made("divergence", 3), made("vanishing_gradients", None)], tl)[1].caused_by == "divergence"
    out = link([made("frozen_parameters", 2), made("loss_plateau", None)], tl)
    assert links(out)["loss_plateau"] == "frozen_parameters"


def test_no_circle_and_no_finding_explains_itself():
    """A table with a circle is refused when it is declared; handed one anyway, linking still makes
    no circle, and a code that would explain itself explains nothing."""
    circle = (Relation("divergence", frozenset({"loss_plateau"}), ANYWHERE, "a"),
              Relation("loss_plateau", frozenset({"divergence"}), ANYWHERE, "b"),
              Relation("dead_units", frozenset({"dead_units"}), ANYWHERE, "c"))
    with pytest.raises(ImportError, match="circle"):
        causes._check_acyclic(circle)
    causes._check_acyclic(RELATIONS)
    out = link([made("divergence", 5), made("loss_plateau", 5), made("dead_units", 5)], run(), circle)
    linked = links(out)
    assert {linked["divergence"], linked["loss_plateau"]} in ({None, "divergence"}, {None, "loss_plateau"})
    assert linked["dead_units"] is None
    assert codes(out)[0] in ("divergence", "loss_plateau") and out[0].caused_by is None


def test_linking_leaves_the_findings_it_was_given_as_they_were():
    nan, explode = made("nonfinite_loss", 26), made("exploding_gradients", 24)
    given = [nan, explode]
    out = link(given, run())
    assert given == [nan, explode] and nan.caused_by is None and out[1] is not nan
    assert link([], run()) == []


def test_each_reason_fits_the_report_line_it_is_shown_on():
    """The terminal shows `caused by CODE (step N): REASON` on one line of a 100-column terminal."""
    for r in RELATIONS:
        assert len(f"  caused by {r.cause} (step 99999): {r.reason}") <= 100, r.reason
        assert r.cause in REGISTRY and r.explains <= set(REGISTRY), r


def test_findings_gathered_from_ranks_regroup_under_their_own_ranks_cause():
    """Rank 0's report is rebuilt from every rank's findings (already linked, each with its rank):
    each consequence goes under the cause of its own rank, whatever order they were gathered in."""
    def on(rank: int, code: str, step: int, caused_by: str | None = None) -> Finding:
        f = made(code, step, rank=rank)
        f.caused_by = caused_by
        return f

    gathered = [on(0, "nonfinite_loss", 26, "exploding_gradients"), on(1, "nonfinite_loss", 30, "exploding_gradients"),
                on(1, "exploding_gradients", 28), on(0, "exploding_gradients", 24), on(0, "memory_pressure", 3)]
    out = causes.regroup(gathered, key=lambda f: (-f.severity, f.step, f.evidence["rank"]))
    assert [(f.code, f.evidence["rank"]) for f in out] == [
        ("exploding_gradients", 0), ("nonfinite_loss", 0), ("exploding_gradients", 1), ("nonfinite_loss", 1),
        ("memory_pressure", 0)]
    assert causes.regroup([]) == []


def blown_up() -> Timeline:
    """The loss climbs 25 -> 1.4e7 in five steps with the gradient norm, then overflows to inf."""
    tl = make_timeline([14.2, 20.4, 47.3, 1630.0, 7.28e6, math.nan],
                       losses=[25.6, 22.2, 11.4, 238.0, 1.43e7, math.inf], lr=0.012)
    tl.events.append(Event("nonfinite_loss", 5, 0, {"value": math.inf, "origin": "loss"}))
    return tl


def test_evaluate_returns_the_findings_linked_cause_first():
    result = evaluate(blown_up(), Config())
    assert codes(result.findings) == ["exploding_gradients", "nonfinite_loss"]
    assert links(result.findings) == {"exploding_gradients": None, "nonfinite_loss": "exploding_gradients"}
    assert result.internal_errors == []


def test_a_bug_in_the_linking_is_contained_and_the_findings_come_out_unlinked(monkeypatch):
    def broken(findings, tl):
        raise ZeroDivisionError("injected fault in the linking")

    monkeypatch.setattr(causes, "link", broken)
    result = evaluate(blown_up(), Config())
    assert codes(result.findings) == ["nonfinite_loss", "exploding_gradients"]  # worst first, as before
    assert all(f.caused_by is None for f in result.findings)
    assert result.internal_errors == ["linking causes failed: ZeroDivisionError: injected fault in the linking"]
