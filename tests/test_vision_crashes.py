"""Vision crashes explained from the failing batch: real torchvision detectors and segmenters (built
with weights=None, small images) and a tiny GAN die of the classic mistakes; script_error names what
in the data is wrong and the fix. Healthy twins of the same runs stay free of script_error, and the
list-of-images inputs and list-of-dict targets never trip torchdoctor's own code."""

from __future__ import annotations

import pytest

DETECTOR = """
import torch, torchvision
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
torch.manual_seed(0)
model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=3,
                                          min_size=128, max_size=128)
images = [torch.rand(3, 128, 128) for _ in range(2)]
def target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}
"""

DETECTOR_LOOP = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
model.train()
for step in range(3):
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

GOOD = "[[10, 10, 60, 60], [50, 40, 120, 100]]"

SEGMENTER = """
import torch, torch.nn as nn, torch.nn.functional as F
from torchvision.models.segmentation import lraspp_mobilenet_v3_large
torch.manual_seed(0)
model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
images = torch.rand(2, 3, 64, 64)
mask = torch.randint(0, 5, (2, 64, 64))
"""

SEGMENTER_LOOP = """
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(2):
    loss = criterion(model(images)["out"], mask)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

GAN = """
import torch, torch.nn as nn
torch.manual_seed(0)
netG = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))
netD = nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
optD = torch.optim.Adam(netD.parameters(), lr=2e-4)
optG = torch.optim.Adam(netG.parameters(), lr=2e-4)
criterion = nn.BCEWithLogitsLoss()
real = torch.randn(16, 16)
ones, zeros = torch.ones(16, 1), torch.zeros(16, 1)
for step in range(3):
    fake = netG(torch.randn(16, 8))
    optD.zero_grad()
    lossD = criterion(netD(real), ones) + criterion(netD(FAKE_FOR_D), zeros)
    lossD.backward()
    optD.step()
    optG.zero_grad()
    lossG = criterion(netD(fake), ones)
    lossG.backward()
    optG.step()
"""


def crashed(run, write_script, source: str):
    result = run(write_script(source))
    assert result.status == 1
    finding = result.report.by_code("script_error")
    assert finding is not None, result.codes
    assert result.report.internal_errors == [], result.report.internal_errors
    return finding


DETECTION_CASES = {
    # (x, y, w, h) boxes: 2 of 3 per image have w < x, all fit in the image read as xywh
    "boxes_in_xywh": ("[[60, 50, 30, 40], [10, 10, 20, 20], [70, 20, 40, 30]]", "degenerate_boxes",
                      "convert_box_format", {"degenerate": 4, "boxes": 6, "format": "xywh"}),
    "one_zero_width_box": ("[[10, 10, 60, 60], [50, 50, 120, 120], [40, 40, 40, 80]]", "degenerate_boxes",
                           "drop_degenerate_boxes", {"degenerate": 2, "boxes": 6}),
    "normalized_xywh": ("[[0.5, 0.4, 0.2, 0.3], [0.1, 0.1, 0.3, 0.3]]", "degenerate_boxes", "scale_boxes",
                        {"format": "normalized", "x_max": 0.5}),
    "labels_past_num_classes": (GOOD + ", [1, 5]", "detection_labels", "fix_num_classes",
                                {"classes": 3, "labels_range": [1, 5], "num_classes_needed": 6}),
}


@pytest.mark.parametrize("case", list(DETECTION_CASES))
def test_a_detector_crash_on_its_boxes_is_explained_from_the_batch(run, write_script, case):
    boxes, kind, action, evidence = DETECTION_CASES[case]
    labels = "" if "[1, 5]" in boxes else ", [1] * len(" + boxes + ")"
    source = DETECTOR + f"targets = [target({boxes}{labels}) for _ in images]\n" + DETECTOR_LOOP
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == kind, finding.evidence
    for key, value in evidence.items():
        assert finding.evidence[key] == value, (key, finding.evidence)
    assert finding.fixes[0].action == action
    if kind == "degenerate_boxes":
        assert f"{finding.evidence['degenerate']} of the batch's {finding.evidence['boxes']} boxes" in finding.title
    if action == "convert_box_format":
        assert "box_convert(boxes, 'xywh', 'xyxy')" in finding.fixes[0].snippet
        assert "(x, y, w, h)" in finding.title
    if action == "drop_degenerate_boxes":
        assert "keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])" in finding.fixes[0].snippet
    if action == "fix_num_classes":
        assert finding.fixes[0].params["num_classes"] == 6 and "background" in finding.title
        assert "FastRCNNPredictor(in_features, 6)" in finding.fixes[0].snippet


def test_an_image_without_objects_given_zeros_0_gets_the_empty_target(run, write_script):
    source = DETECTOR + (f"targets = [target({GOOD}, [1, 2]), "
                         "{'boxes': torch.zeros(0), 'labels': torch.zeros(0, dtype=torch.int64)}]\n") + DETECTOR_LOOP
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == "target_boxes_shape"
    assert finding.evidence["bad_shapes"][0] == {"index": 1, "shape": [0], "dtype": "float32"}
    assert "target 1's boxes have shape [0]" in finding.title
    assert finding.fixes[0].action == "empty_target" and "torch.zeros((0, 4))" in finding.fixes[0].snippet


def test_a_detector_called_without_targets_in_train_mode_is_told_train_from_eval(run, write_script):
    source = DETECTOR + "model.train()\nlosses = model(images)\n"
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == "targets_missing"
    assert [f.action for f in finding.fixes] == ["pass_targets", "eval_for_predictions"]
    assert "model.eval()" in finding.fixes[1].snippet


SEGMENTATION_CASES = {
    "voc_255_border": ("mask[:, :3, :] = 255\ncriterion = nn.CrossEntropyLoss()\n", "set_ignore_index",
                       {"ignore_index": -100, "classes": 5, "mask_values": [0, 1, 2, 3, 4, 255]}),
    "one_class_too_many": ("mask[0, 0, 0] = 5\ncriterion = F.cross_entropy\n", "fix_num_classes",
                           {"classes": 5, "mask_values": [0, 1, 2, 3, 4, 5]}),
}


@pytest.mark.parametrize("case", list(SEGMENTATION_CASES))
def test_a_mask_value_past_the_classes_is_explained_with_the_masks_values(run, write_script, case):
    setup, action, evidence = SEGMENTATION_CASES[case]
    finding = crashed(run, write_script, SEGMENTER + setup + SEGMENTER_LOOP)
    assert finding.evidence["kind"] == "mask_out_of_range", finding.evidence
    for key, value in evidence.items():
        assert finding.evidence[key] == value, (key, finding.evidence)
    assert finding.fixes[0].action == action
    if action == "set_ignore_index":
        assert finding.fixes[0].params["ignore_index"] == 255 and "ignore_index=255" in finding.fixes[0].snippet
    else:
        assert finding.fixes[0].params["num_classes"] == 6
    assert "5 classes" in finding.title


def test_a_mask_with_a_channel_dimension_is_squeezed(run, write_script):
    finding = crashed(run, write_script, SEGMENTER + "mask = mask.unsqueeze(1)\ncriterion = nn.CrossEntropyLoss()\n"
                      + SEGMENTER_LOOP)
    assert finding.evidence["kind"] == "mask_shape" and finding.evidence["mask_shape"] == [2, 1, 64, 64]
    assert "squeeze(1)" in finding.fixes[0].snippet


def test_a_gan_whose_discriminator_step_did_not_detach_the_fake_gets_detach(run, write_script):
    finding = crashed(run, write_script, GAN.replace("FAKE_FOR_D", "fake"))
    assert finding.evidence["kind"] == "backward_twice"
    assert finding.evidence["generator"] == "netG" and finding.evidence["discriminator"] == "netD"
    fix = finding.fixes[0]
    assert fix.action == "detach_fake" and "netD(fake.detach())" in fix.snippet


def test_a_second_backward_in_a_one_model_run_keeps_the_generic_explanation(run, write_script):
    source = ("import torch, torch.nn as nn\nmodel = nn.Linear(4, 1)\nopt = torch.optim.SGD(model.parameters(), 0.1)\n"
              "h = model(torch.randn(8, 4)).sum()\nfor step in range(2):\n    opt.zero_grad()\n    h.backward()\n"
              "    opt.step()\n")
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == "backward_twice" and finding.fixes[0].action == "recompute_per_step"


@pytest.mark.parametrize("source", [
    DETECTOR + f"targets = [target({GOOD}, [1, 2]) for _ in images]\n" + DETECTOR_LOOP.replace("range(3)", "range(2)"),
    SEGMENTER + "mask[:, :3, :] = 255\ncriterion = nn.CrossEntropyLoss(ignore_index=255)\n" + SEGMENTER_LOOP,
    GAN.replace("FAKE_FOR_D", "fake.detach()"),
], ids=["detection", "segmentation", "gan"])
def test_the_same_runs_on_valid_data_have_no_script_error(run, write_script, source):
    result = run(write_script(source))
    assert result.status == 0
    assert "script_error" not in result.codes
    assert result.report.internal_errors == [], result.report.internal_errors


def test_uint8_images_into_a_detector_are_converted_to_float_in_0_1(run, write_script):
    source = (DETECTOR + "images = [(img * 255).to(torch.uint8) for img in images]\n"
              f"targets = [target({GOOD}, [1, 2]) for _ in images]\n" + DETECTOR_LOOP)
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == "images_not_float" and finding.evidence["image_dtypes"] == ["uint8"]
    assert finding.fixes[0].action == "scale_images" and "scale=True" in finding.fixes[0].snippet


def test_a_detector_forward_crash_names_its_list_of_images(run, write_script):
    source = DETECTOR + "targets = [target([[10, 10, 10, 60]], [1]) for _ in images]\n" + DETECTOR_LOOP
    finding = crashed(run, write_script, source)
    (images,) = finding.evidence["inputs"]
    assert images["count"] == 2 and images["shape"] == [3, 128, 128] and images["dtypes"] == ["float32"]


def test_uint8_images_into_a_segmenter_are_scaled_not_only_cast(run, write_script):
    source = SEGMENTER + "images = (images * 255).to(torch.uint8)\ncriterion = nn.CrossEntropyLoss()\n" + SEGMENTER_LOOP
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == "dtype_mismatch", finding.evidence
    assert "/ 255" in finding.fixes[0].snippet and finding.fixes[0].params["dtype"] == "float32"


def test_a_detector_left_in_eval_mode_returns_detections_not_losses(run, write_script):
    source = DETECTOR + f"targets = [target({GOOD}, [1, 2]) for _ in images]\n" + DETECTOR_LOOP.replace(
        "model.train()", "model.eval()")
    finding = crashed(run, write_script, source)
    assert finding.evidence["kind"] == "detector_eval_output" and finding.evidence["detector"] == "model"
    assert "model.train()" in finding.fixes[0].snippet and "list of detections" in finding.title
