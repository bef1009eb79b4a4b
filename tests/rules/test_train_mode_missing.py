"""train_mode_missing on hand-made habits: steps trained with the model in eval() after earlier steps
in train(), beside a model whose layers compute the same in both modes and a run in eval() throughout."""

from __future__ import annotations

from tests.rules.timelines import findings, make_model_timeline, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

MLP = sequential_types("Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear")
PLAIN = sequential_types("Linear", "ReLU", "Linear")


def trained(module_types: dict[str, str], in_train: int, in_eval: int, first: int | None = 20) -> Timeline:
    tl = make_model_timeline(module_types, steps=in_train + in_eval)
    habits = tl.habits
    habits.train_mode_steps, habits.eval_mode_steps = in_train, in_eval
    habits.eval_mode_first_step = first if in_eval else None
    habits.eval_mode_model = "Net" if in_eval else None
    return tl


def test_steps_in_eval_after_validation_on_dropout_and_batchnorm_are_found():
    (finding,) = findings("train_mode_missing", trained(MLP, in_train=20, in_eval=60))
    assert finding.severity is Severity.WARNING
    assert finding.step == 20 and finding.where is None
    assert finding.evidence == {"steps": 60, "train_mode_steps": 20, "first_step": 20, "model": "Net",
                                "module_types": ["BatchNorm1d", "Dropout"], "modules": ["1", "3"]}
    assert "60 of 80 training steps" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "call_train" and fix.params == {"model": "Net", "steps": 60, "first_step": 20}
    # the class name is no variable of the script: the snippet says "model"
    assert "model.train()" in fix.snippet and "model.train()" in fix.text


def test_a_model_without_dropout_or_batchnorm_is_clean():
    assert findings("train_mode_missing", trained(PLAIN, in_train=20, in_eval=60)) == []


def test_a_run_in_eval_from_its_first_step_is_a_choice_not_a_forgotten_call():
    assert findings("train_mode_missing", trained(MLP, in_train=0, in_eval=80, first=0)) == []


def test_a_step_or_two_in_eval_is_below_the_threshold():
    assert findings("train_mode_missing", trained(MLP, in_train=78, in_eval=2)) == []
    assert len(findings("train_mode_missing", trained(MLP, in_train=78, in_eval=2), min_steps=2)) == 1


def test_every_step_in_train_is_clean():
    assert findings("train_mode_missing", trained(MLP, in_train=80, in_eval=0)) == []
