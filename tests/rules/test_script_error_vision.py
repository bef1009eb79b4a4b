"""script_error on vision crashes, from hand-made timelines: the `script_failed` event carries the
failing batch's facts as the probe records them (`targets` for a detector's list-of-dict targets,
`loss_call` for a dense loss), and the rule names what in the data is wrong."""

from __future__ import annotations

from torchdoctor.timeline import Event, ModelInfo, Timeline

from .timelines import findings

ASSERTION = ["AssertionError", "Exception", "BaseException", "object"]
INDEX = ["IndexError", "LookupError", "Exception", "BaseException", "object"]
RUNTIME = ["RuntimeError", "Exception", "BaseException", "object"]
BOX_MESSAGE = ("All bounding boxes should have positive height and width. Found invalid box [60.0, 50.0, 30.0, 40.0] "
               "for target at index 0.")


def failed(message: str, types: list[str], models: tuple[str, ...] = ("FasterRCNN",), **data) -> Timeline:
    tl = Timeline()
    tl.models = [ModelInfo(name, {name: name}, 1000, 1000) for name in models]
    tl.events.append(Event("script_failed", 0, 0, {"exception": types[0], "exception_types": types,
                                                    "message": message, **data}))
    return tl


def boxes(**facts) -> dict:
    base = {"images": 2, "boxes": 6, "degenerate": 4, "xywh_fits": 6, "empty_images": 0, "bad_shapes": [],
            "image_sizes": [[128, 128]], "x_min": 10.0, "y_min": 10.0, "x_max": 70.0, "y_max": 50.0,
            "degenerate_examples": [{"index": 0, "box": [60.0, 50.0, 30.0, 40.0]}], "labels_range": [1, 2],
            "detector": "FasterRCNN", "num_classes": 3,
            "num_classes_at": "roi_heads.box_predictor.cls_score.out_features"}
    return base | facts


def box_crash(**facts) -> Timeline:
    return failed(BOX_MESSAGE, ASSERTION, phase="forward", module="FasterRCNN", module_type="FasterRCNN",
                  targets=boxes(**facts))


def test_boxes_that_all_fit_as_xywh_get_box_convert():
    (finding,) = findings("script_error", box_crash())
    assert finding.evidence["kind"] == "degenerate_boxes" and finding.evidence["format"] == "xywh"
    assert finding.evidence["degenerate"] == 4 and finding.evidence["boxes"] == 6
    assert finding.evidence["invalid_box"] == [60.0, 50.0, 30.0, 40.0] and finding.evidence["target_index"] == 0
    assert "4 of the batch's 6 boxes are degenerate" in finding.title and "(x, y, w, h)" in finding.title
    assert finding.fixes[0].action == "convert_box_format"
    assert "box_convert(boxes, 'xywh', 'xyxy')" in finding.fixes[0].snippet
    assert "targets" not in finding.evidence  # flattened into the numbers above


def test_one_degenerate_box_among_boxes_that_do_not_fit_as_xywh_is_dropped():
    (finding,) = findings("script_error", box_crash(degenerate=1, xywh_fits=4))
    assert "format" not in finding.evidence
    assert finding.fixes[0].action == "drop_degenerate_boxes"
    assert "keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])" in finding.fixes[0].snippet


def test_too_few_degenerate_boxes_are_not_called_xywh_and_the_share_is_a_setting():
    assert findings("script_error", box_crash(degenerate=1, boxes=20, xywh_fits=20))[0].fixes[0].action == \
        "drop_degenerate_boxes"
    relaxed = findings("script_error", box_crash(degenerate=1, boxes=20, xywh_fits=20), xywh_share=0.05)
    assert relaxed[0].fixes[0].action == "convert_box_format"


def test_normalized_boxes_are_scaled_to_the_image():
    (finding,) = findings("script_error", box_crash(x_min=0.1, y_min=0.1, x_max=0.5, y_max=0.4))
    assert finding.evidence["format"] == "normalized"
    assert [f.action for f in finding.fixes] == ["scale_boxes", "convert_box_format"]
    assert finding.fixes[0].params == {"width": 128, "height": 128}


def test_targets_missing_in_train_mode_say_train_returns_losses_eval_detections():
    (finding,) = findings("script_error", failed("targets should not be none when in training mode", ASSERTION,
                                                 phase="forward", module="FasterRCNN", module_type="FasterRCNN"))
    assert finding.evidence["kind"] == "targets_missing" and "train() mode" in finding.title
    assert [f.action for f in finding.fixes] == ["pass_targets", "eval_for_predictions"]


def test_an_image_without_objects_given_zeros_0_gets_a_0_by_4_tensor():
    tl = failed("Expected target boxes to be a tensor of shape [N, 4], got torch.Size([0]).", ASSERTION,
                phase="forward", module="FasterRCNN", module_type="FasterRCNN",
                targets=boxes(bad_shapes=[{"index": 1, "shape": [0], "dtype": "float32"}]))
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "target_boxes_shape" and "target 1's boxes have shape [0]" in finding.title
    assert finding.fixes[0].action == "empty_target"
    assert "{'boxes': torch.zeros((0, 4)), 'labels': torch.zeros((0,), dtype=torch.int64)}" in finding.fixes[0].snippet


def test_a_single_box_given_flat_is_reshaped():
    tl = failed("Expected target boxes to be a tensor of shape [N, 4], got torch.Size([4]).", ASSERTION,
                targets=boxes(bad_shapes=[{"index": 0, "shape": [4], "dtype": "float32"}]))
    assert findings("script_error", tl)[0].fixes[0].action == "reshape_boxes"


def test_box_labels_past_num_classes_count_the_background():
    tl = failed("Target 5 is out of bounds.", INDEX, phase="loss", loss="cross_entropy",
                inputs=[{"shape": [512, 3], "dtype": "float32", "device": "cpu"},
                        {"shape": [512], "dtype": "int64", "device": "cpu"}], target_range=[0, 5],
                targets=boxes(labels_range=[1, 5]),
                loss_call={"function": "cross_entropy", "ignore_index": -100, "classes": 3, "target_shape": [512]})
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "detection_labels"
    assert finding.evidence["classes"] == 3 and finding.evidence["num_classes_needed"] == 6
    assert "background" in finding.title and "num_classes=6" in finding.title
    assert finding.fixes[0].params == {"num_classes": 6} and "FastRCNNPredictor" in finding.fixes[0].snippet


def test_box_labels_from_zero_are_also_told_zero_is_the_background():
    tl = failed("Target 3 is out of bounds.", INDEX, phase="loss", loss="cross_entropy",
                targets=boxes(labels_range=[0, 3], detector="SSD", num_classes=3,
                              num_classes_at="head.classification_head.num_columns"))
    (finding,) = findings("script_error", tl)
    assert [f.action for f in finding.fixes] == ["fix_num_classes", "shift_labels"]
    assert "ssdlite320_mobilenet_v3_large(" in finding.fixes[0].snippet


def mask_crash(values: list[int], bad: int, ignore_index: int = -100) -> Timeline:
    return failed(f"Target {bad} is out of bounds.", INDEX, phase="loss", loss="cross_entropy",
                  inputs=[{"shape": [2, 5, 64, 64], "dtype": "float32", "device": "cpu"},
                          {"shape": [2, 64, 64], "dtype": "int64", "device": "cpu"}],
                  loss_call={"function": "cross_entropy", "ignore_index": ignore_index, "classes": 5,
                             "input_shape": [2, 5, 64, 64], "target_shape": [2, 64, 64], "target_dtype": "int64",
                             "target_values": values, "distinct_values": len(values)})


def test_a_voc_255_border_with_the_default_ignore_index_gets_ignore_index_255():
    (finding,) = findings("script_error", mask_crash([0, 1, 2, 3, 4, 255], 255))
    assert finding.evidence["kind"] == "mask_out_of_range"
    assert finding.evidence["mask_values"] == [0, 1, 2, 3, 4, 255] and finding.evidence["ignore_index"] == -100
    assert "{0, 1, 2, 3, 4, 255}" in finding.title and "5 classes" in finding.title
    assert [f.action for f in finding.fixes] == ["set_ignore_index"]
    assert finding.fixes[0].params == {"ignore_index": 255}


def test_a_mask_one_class_past_the_logits_gets_num_classes_or_a_remap():
    (finding,) = findings("script_error", mask_crash([0, 1, 2, 3, 4, 5, 255], 5, ignore_index=255))
    assert [f.action for f in finding.fixes] == ["fix_num_classes", "remap_labels"]
    assert finding.fixes[0].params == {"num_classes": 6} and ": 5 is no class" in finding.title


def test_a_classification_target_out_of_range_keeps_its_own_explanation():
    tl = failed("Target 10 is out of bounds.", INDEX, phase="loss", loss="cross_entropy",
                inputs=[{"shape": [8, 10], "dtype": "float32", "device": "cpu"},
                        {"shape": [8], "dtype": "int64", "device": "cpu"}], target_range=[1, 10],
                loss_call={"function": "cross_entropy", "ignore_index": -100, "classes": 10, "target_shape": [8]})
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "target_out_of_range" and finding.fixes[0].action == "shift_labels"
    assert "loss_call" not in finding.evidence


def test_a_mask_with_a_channel_dimension_is_squeezed():
    tl = failed("only batches of spatial targets supported (3D tensors) but got targets of dimension: 4", RUNTIME,
                phase="loss", loss="cross_entropy",
                loss_call={"function": "cross_entropy", "ignore_index": -100, "classes": 5,
                           "input_shape": [2, 5, 64, 64], "target_shape": [2, 1, 64, 64], "target_dtype": "int64"})
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "mask_shape" and "squeeze(1)" in finding.fixes[0].snippet


SECOND_BACKWARD = "Trying to backward through the graph a second time (or directly access saved tensors after ..."


def test_a_second_backward_in_a_two_model_run_is_the_undetached_fake():
    (finding,) = findings("script_error", failed(SECOND_BACKWARD, RUNTIME, ("netD", "netG"), phase="backward"))
    assert finding.evidence["kind"] == "backward_twice"
    assert finding.evidence["generator"] == "netG" and finding.evidence["discriminator"] == "netD"
    assert finding.fixes[0].action == "detach_fake" and "netD(fake.detach())" in finding.fixes[0].snippet


def test_the_roles_seen_name_the_models_over_their_names():
    tl = failed(SECOND_BACKWARD, RUNTIME, ("critic_net", "decoder"), phase="backward")
    tl.roles.generator, tl.roles.discriminator = "decoder", "critic_net"
    (finding,) = findings("script_error", tl)
    assert "critic_net(fake.detach())" in finding.fixes[0].snippet and finding.evidence["generator"] == "decoder"


def test_a_second_backward_in_a_one_model_run_keeps_the_generic_explanation():
    (finding,) = findings("script_error", failed(SECOND_BACKWARD, RUNTIME, ("Net",), phase="backward"))
    assert finding.evidence["kind"] == "backward_twice" and finding.fixes[0].action == "recompute_per_step"
    assert "generator" not in finding.evidence


def test_uint8_images_into_a_detector_get_scaled_to_float():
    tl = failed("Expected input images to be of floating type (in range [0, 1]), but found type torch.uint8 instead",
                ["TypeError", "Exception", "BaseException", "object"], phase="forward",
                module="transform", module_type="GeneralizedRCNNTransform", targets=boxes(image_dtypes=["uint8"]))
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "images_not_float" and "uint8" in finding.title
    assert finding.fixes[0].action == "scale_images"


def test_a_detectors_eval_output_summed_as_losses_is_told_to_train():
    tl = failed("'list' object has no attribute 'values'", ["AttributeError", "Exception", "BaseException", "object"],
                phase="code outside the model", module=None)
    tl.models[0].label = "detector"
    (finding,) = findings("script_error", tl)
    assert finding.evidence["kind"] == "detector_eval_output" and "detector.train()" in finding.fixes[0].snippet
    plain = failed("'list' object has no attribute 'values'", ["AttributeError", "Exception", "BaseException",
                                                                "object"], ("Net",))
    assert findings("script_error", plain)[0].evidence["kind"] == "other"
