"""frozen_parameters on hand-made `unoptimized_parameters` events: a backbone left out of the
optimizer, a parameter group at lr 0, beside a backbone frozen on purpose (no event at all)."""

from __future__ import annotations

from tests.rules.timelines import Event, findings, make_model_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

# a small ResNet-like classifier: a convolutional backbone and a linear head
RESNET = {"Net": "Net", "backbone": "Sequential", "backbone.0": "Conv2d", "backbone.1": "BatchNorm2d",
          "backbone.2": "ReLU", "backbone.3": "Conv2d", "backbone.4": "BatchNorm2d", "backbone.5": "ReLU",
          "pool": "AdaptiveAvgPool2d", "fc": "Linear"}
BACKBONE = ["backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias",
            "backbone.3.weight", "backbone.3.bias", "backbone.4.weight", "backbone.4.bias"]
BACKBONE_NUMEL = (16 * 3 * 9 + 16) + 2 * 16 + (32 * 16 * 9 + 32) + 2 * 32
HEAD_NUMEL = 32 * 10 + 10


def unoptimized(params: list[str], numel: int, zero_lr: list[str] | None = None) -> Timeline:
    """The run as the recorder leaves it when, once every optimizer has stepped (step 2), parameters
    that require and received gradients are in no optimizer (or in a group with lr 0)."""
    tl = make_model_timeline(RESNET, steps=30)
    tl.models[0].num_params = tl.models[0].trainable_params = BACKBONE_NUMEL + HEAD_NUMEL
    tl.events.append(Event("unoptimized_parameters", 2, 0, {
        "params": params, "numel": numel, "trainable_numel": BACKBONE_NUMEL + HEAD_NUMEL,
        "zero_lr": zero_lr or [], "optimizers": 1}))
    return tl


def test_a_backbone_left_out_of_the_optimizer_is_found():
    (finding,) = findings("frozen_parameters", unoptimized(BACKBONE, BACKBONE_NUMEL))
    assert finding.severity is Severity.ERROR
    assert finding.where == "backbone" and finding.step == 2 and finding.epoch == 0
    assert finding.evidence == {"params": BACKBONE, "count": 8, "numel": BACKBONE_NUMEL,
                                "trainable_numel": BACKBONE_NUMEL + HEAD_NUMEL, "zero_lr": []}
    share = BACKBONE_NUMEL / (BACKBONE_NUMEL + HEAD_NUMEL)
    assert f"8 parameters ({BACKBONE_NUMEL:,} weights, {share:.0%} of the trainable ones)" in finding.title
    assert "are in no optimizer" in finding.title and "and 4 more" in finding.title
    optimize, freeze = finding.fixes
    assert optimize.action == "optimize_all_parameters" and optimize.params == {"params": 8}
    # the whole model to the optimizer the script uses, with its lr; no name the script lacks (model.fc)
    assert optimize.snippet.startswith("optimizer = torch.optim.SGD(model.parameters()")
    assert freeze.action == "freeze_parameters" and freeze.params == {"params": 8}
    assert "for p in model.backbone.parameters():\n    p.requires_grad_(False)" in freeze.snippet


def test_a_parameter_group_at_lr_zero_counts_as_never_updated():
    (finding,) = findings("frozen_parameters", unoptimized(BACKBONE, BACKBONE_NUMEL, zero_lr=BACKBONE))
    assert finding.evidence["zero_lr"] == BACKBONE
    assert "sit in a parameter group with lr 0" in finding.title


def test_parameters_in_no_common_module_get_the_whole_model_fixes():
    params = ["backbone.0.weight", "fc.bias"]
    (finding,) = findings("frozen_parameters", unoptimized(params, 16 * 3 * 9 + 10))
    assert finding.where is None
    assert "model.parameters()" in finding.fixes[0].snippet
    # the parameters named, not a set the script never defined (TRAINED, issue 17)
    assert "if name in {'backbone.0.weight', 'fc.bias'}:" in finding.fixes[1].snippet
    assert "TRAINED" not in finding.fixes[1].snippet


def test_a_backbone_frozen_on_purpose_is_clean():
    # requires_grad_(False): no gradient, so the recorder makes no event, whatever the optimizer holds
    tl = make_model_timeline(RESNET, steps=30)
    tl.models[0].num_params, tl.models[0].trainable_params = BACKBONE_NUMEL + HEAD_NUMEL, HEAD_NUMEL
    tl.events.append(Event("compiled", 0, None, {"model": "Net"}))  # another probe's event
    assert findings("frozen_parameters", tl) == []
    assert findings("frozen_parameters", Timeline()) == []
