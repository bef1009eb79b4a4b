"""eval_mode_missing on hand-made habits: validation losses computed under no_grad with a model still
in train(), beside a model whose layers compute the same in both modes, and a proper model.eval()."""

from __future__ import annotations

from tests.rules.timelines import findings, make_model_timeline, sequential_types
from torchdoctor.findings import Severity
from torchdoctor.timeline import ModelInfo, Timeline

CNN = sequential_types("Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Dropout", "Linear")
PLAIN = sequential_types("Conv2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear")


def validated_run(module_types: dict[str, str], in_train_mode: int, first_step: int | None = 9,
                  model: str = "Sequential") -> Timeline:
    """30 steps validated every 10 (two batches each); `in_train_mode` of those evaluation losses were
    computed while the model was in train() mode, the first after `first_step` steps."""
    tl = make_model_timeline(module_types, steps=30)
    tl.eval_forwards = 6
    habits = tl.habits
    habits.eval_in_train_mode = in_train_mode
    habits.eval_in_train_mode_step = first_step if in_train_mode else None
    habits.eval_model = model if in_train_mode else None
    return tl


def test_validation_in_train_mode_on_a_model_with_dropout_and_batchnorm_is_found():
    (finding,) = findings("eval_mode_missing", validated_run(CNN, in_train_mode=6))
    assert finding.severity is Severity.WARNING
    assert finding.where is None and finding.step == 9
    assert finding.evidence == {"evaluation_losses": 6, "module_types": ["BatchNorm2d", "Dropout"],
                                "modules": ["1", "5"], "first_step": 9}
    assert "6 evaluation losses" in finding.title and "BatchNorm2d, Dropout layers" in finding.title
    fix = finding.fixes[0]
    assert fix.action == "call_eval" and fix.params == {"modules": 2}
    assert "model.eval()" in fix.snippet and "model.train()" in fix.snippet


def test_a_model_without_dropout_or_batchnorm_is_clean():
    # train() and eval() compute the same: nothing to warn about
    assert findings("eval_mode_missing", validated_run(PLAIN, in_train_mode=6)) == []


def test_validation_after_model_eval_is_clean():
    assert findings("eval_mode_missing", validated_run(CNN, in_train_mode=0)) == []


def test_the_model_evaluated_is_the_one_judged():
    # a GAN-like pair: the discriminator (no dropout, no batch norm) scored under no_grad in train()
    tl = validated_run(CNN, in_train_mode=3, model="Discriminator")
    tl.models.append(ModelInfo("Discriminator", {"Discriminator": "Discriminator", "0": "Linear",
                                                 "1": "LeakyReLU", "2": "Linear"}, 500, 500))
    assert findings("eval_mode_missing", tl) == []
    tl.habits.eval_model = "Sequential"
    assert len(findings("eval_mode_missing", tl)) == 1


def test_an_empty_timeline_is_clean():
    assert findings("eval_mode_missing", Timeline()) == []
    tl = Timeline()
    tl.habits.eval_in_train_mode = 2  # counted, but no model was recorded
    assert findings("eval_mode_missing", tl) == []
