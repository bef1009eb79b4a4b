"""Segmentation for real: a torchvision model returns {"out": ...}, the loss is a dense
cross-entropy with ignore_index=255, and a validation written by hand (argmax, no loss) is still
seen: the training loss applied to "out" scores it, with its pixel accuracy and mean IoU."""

from __future__ import annotations

import re

from tests.conftest import SCRIPTS, run_script
from torchdoctor.findings import Severity
from torchdoctor.jsonreport import to_dict

SEGMENTER = SCRIPTS / "vision" / "tiny_segmenter.py"


def test_a_segmentation_run_is_recorded_as_one_with_its_validation_iou(capsys):
    result = run_script(SEGMENTER)
    report, tl = result.report, result.report.timeline
    assert result.status == 0 and report.internal_errors == []
    assert tl.task == "segmentation"
    assert tl.prior.dense and tl.prior.ignore_index == 255 and tl.prior.classes == 3
    val = tl.validation()
    assert len(val) == 2 and all(e.source == "derived" for e in val)
    printed = [float(x) for x in re.findall(r"val pixel accuracy ([0-9.]+)", capsys.readouterr().out)]
    assert [round(e.accuracy, 3) for e in val] == printed  # the 255 border left out, as the script does
    assert all(0 < e.iou <= 1 for e in val)
    assert to_dict(report)["metrics"]["iou"]["val"]
    assert tl.habits.classes and all(len(s["labels"]) == 3 for s in tl.habits.classes)
    assert not [f for f in report.findings if f.severity >= Severity.WARNING], report.codes()
