"""Detection for real: a torchvision detector returns its losses as a dict that the script sums.
Each part is its own series, the losses the detector computes inside are not the training loss
(no chance level, no accuracy of its proposals), and a list of images is the batch everywhere."""

from __future__ import annotations

import math

from tests.conftest import SCRIPTS, run_script
from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.jsonreport import to_dict
from torchdoctor.timeline import Event

DETECTOR = SCRIPTS / "vision" / "tiny_detector.py"
TERMS = ["loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"]


def test_each_loss_part_is_a_series_and_the_list_of_images_is_the_batch():
    result = run_script(DETECTOR, "--steps", "4")
    report, tl = result.report, result.report.timeline
    assert result.status == 0 and report.internal_errors == []
    assert tl.task == "detection" and tl.habits.targets == "boxes"
    series = tl.term_series()
    assert list(series) == TERMS and all(len(v) == 4 for v in series.values())
    for record in tl.steps:  # the step's loss is the sum the script backwarded
        assert math.isclose(record.loss, sum(record.terms.values()), rel_tol=1e-5)
    assert tl.loss_terms == {"loss_classifier": "roi_heads", "loss_box_reg": "roi_heads",
                             "loss_objectness": "rpn", "loss_rpn_box_reg": "rpn"}
    assert tl.prior is None and tl.train_loss_fn is None  # the detector's inner losses are its parts
    assert all(r.accuracy is None for r in tl.steps)
    assert tl.memory.profile is not None and tl.memory.profile.batch_size == 2
    assert tl.models[0].input_shape == [3, 96, 96]
    assert [s["shape"] for s in tl.habits.inputs][:1] == [[2, 3, 96, 96]]
    data = to_dict(report)
    assert data["run"]["task"] == "detection" and set(data["metrics"]["loss"]["terms"]) == set(TERMS)
    assert not [f for f in report.findings if f.severity >= Severity.WARNING], report.codes()


def test_raw_pixels_given_to_a_detector_are_found_with_the_detectors_own_fix():
    result = run_script(DETECTOR, "--steps", "3", "--raw-pixels")
    found = result.report.by_code("unnormalized_input")
    assert found is not None and found.where == "transform"
    assert "standardizes the images itself" in found.fixes[0].text
    assert "/ 255.0" in found.fixes[0].snippet


def nan_timeline(terms_at_nan: dict[str, float]):
    tl = make_timeline([1.0] * 6, [2.0] * 5 + [math.nan])
    for record in tl.steps:
        record.terms = {"loss_classifier": 1.0, "loss_box_reg": 1.0}
    tl.steps[-1].terms = terms_at_nan
    tl.loss_terms = {"loss_classifier": "roi_heads", "loss_box_reg": "roi_heads"}
    tl.events.append(Event("nonfinite_loss", 5, 0, {"value": math.nan, "origin": "loss"}))
    return tl


def test_a_nan_in_one_loss_part_names_the_part_and_its_head():
    (f,) = findings("nonfinite_loss", nan_timeline({"loss_classifier": 0.9, "loss_box_reg": math.nan}))
    assert f.evidence["term"] == "loss_box_reg" and f.evidence["head"] == "roi_heads"
    assert "the loss part loss_box_reg (computed in roi_heads) went non-finite" in f.title


def test_when_every_part_is_nan_the_part_is_no_news():
    (f,) = findings("nonfinite_loss", nan_timeline({"loss_classifier": math.nan, "loss_box_reg": math.nan}))
    assert f.evidence["nonfinite_terms"] == ["loss_classifier", "loss_box_reg"]
    assert "loss part" not in f.title


