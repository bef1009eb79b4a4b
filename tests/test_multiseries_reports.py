"""Runs with more than one loss, as people read them: a detector's loss terms and a GAN's two
models each get their own line in the terminal and their own curve on the page, the header names
the task, a segmentation run's mean IoU and a GAN's output diversity are drawn, and a saved report
shows the same. Built from hand-made timelines (every number fixed); a plain one-loss run is unchanged."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.conftest import cli
from tests.test_terminal_golden import long_timeline, text_of
from torchdoctor import jsonreport
from torchdoctor.render import loss_plots, plots
from torchdoctor.render.html import render_html
from torchdoctor.render.terminal import series_block, trend
from torchdoctor.report import Report
from torchdoctor.timeline import EvalPass, Timeline

TERMS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
IMG_ALT = re.compile(r"<img\b[^>]*\balt=\"([^\"]*)\"")


def detection_timeline() -> Timeline:
    """24 steps of a detector whose four loss terms sum to the step's loss."""
    tl = long_timeline()
    tl.run.argv, tl.run.task = ["/home/me/detection.py"], "detection"
    for r in tl.steps:
        r.terms = {"loss_classifier": 0.7 / (1 + r.step), "loss_box_reg": 0.3 - 0.01 * r.step,
                   "loss_objectness": 0.05, "loss_rpn_box_reg": 0.02 * (1 + 0.1 * r.step)}
        r.loss = sum(r.terms.values())
    return tl


def gan_timeline() -> Timeline:
    """A DCGAN's 24 steps: the discriminator's loss falls toward 0 while the generator's climbs
    (NaN once, at step 5); the generator's output diversity sampled every 4 steps."""
    tl = long_timeline()
    tl.run.argv = ["/home/me/dcgan.py"]
    tl.evaluations = []
    tl.roles.generator, tl.roles.discriminator = "netG", "netD"
    for r in tl.steps:
        r.model_losses = {"netD": 1.4 / (1 + r.step), "netG": 0.7 + 0.2 * r.step}
        r.loss = r.model_losses["netD"]  # the step's loss is one model's
    tl.steps[5].model_losses["netG"] = math.nan
    tl.roles.diversity = [(s, 0.9 - 0.03 * s) for s in range(0, 24, 4)]
    return tl


def segmentation_timeline() -> Timeline:
    tl = long_timeline()
    tl.run.argv, tl.run.task = ["/home/me/segment.py"], "segmentation"
    tl.evaluations = [EvalPass(step=12, epoch=0, loss=0.9, accuracy=0.8, iou=0.41, samples=8, batches=2),
                      EvalPass(step=24, epoch=1, loss=0.7, accuracy=0.86, iou=0.55, samples=8, batches=2)]
    return tl


def read_back(report: Report) -> Report:
    """Through the JSON file's text, NaN as "nan", as `torchdoctor report RUN.json` reads it."""
    return jsonreport.from_dict(json.loads(json.dumps(jsonreport.to_dict(report), allow_nan=False)))


@pytest.fixture
def drawn(monkeypatch):
    """The legend labels of each figure drawn, read just before it is saved as PNG."""
    figures: list[list[str]] = []
    save = plots._png

    def keep(fig):
        figures.append([line.get_label() for ax in fig.axes for line in ax.get_lines()
                        if not line.get_label().startswith("_")])
        return save(fig)

    monkeypatch.setattr(plots, "_png", keep)
    return figures


# -- terminal -------------------------------------------------------------------------------------


def test_a_detector_gets_one_line_per_loss_term_and_its_task_in_the_header():
    text = text_of(Report(detection_timeline()))
    lines = text.splitlines()
    assert lines[0].startswith("torchdoctor detection.py · detection · 24 steps · 2 epochs · cpu")
    assert lines[1].startswith("✔ healthy: 24 steps, loss 1.07 → ")
    at = lines.index("loss per term (first → last, min):")  # after the healthy line, which wraps
    rows = {line.split()[0]: line for line in lines[at + 1:at + 5]}
    assert set(rows) == set(TERMS)
    assert rows["loss_classifier"].endswith("  0.7 → 0.02917, min 0.02917")
    assert rows["loss_box_reg"].endswith("  0.3 → 0.07, min 0.07")
    assert rows["loss_rpn_box_reg"].endswith("  0.02 → 0.066, min 0.02")
    assert "▁" in rows["loss_classifier"] and "█" in rows["loss_classifier"]


def test_a_gan_shows_each_models_loss_not_only_the_discriminators():
    text = text_of(Report(gan_timeline()))
    assert text.startswith("torchdoctor dcgan.py · generation · 24 steps")
    healthy = " ".join(text.splitlines()[1:3])  # the healthy line wraps at 100 columns
    assert "netD loss 1.4 → 0.05833, netG loss 0.7 → 5.3" in healthy and ", loss 1.4 →" not in healthy
    block = series_block(Report(gan_timeline()))
    assert block[0] == "loss per model (first → last, min):"
    assert block[1].startswith("  netD (discriminator)  ") and block[1].endswith("1.4 → 0.05833, min 0.05833")
    assert block[2].startswith("  netG (generator)      ") and block[2].endswith("0.7 → 5.3, min 0.7")
    assert "✗" in block[2]  # the NaN at step 5 shows where it was
    assert all(line in text for line in block)


def test_a_plain_one_loss_run_has_no_series_block():
    report = Report(long_timeline())
    assert series_block(report) == [] and "loss per" not in text_of(report)
    one = long_timeline()
    for r in one.steps:
        r.terms = {"loss": r.loss}  # a dict of one loss is still one loss
    assert series_block(Report(one)) == []


def test_the_trend_is_linear_bucketed_and_marks_non_finite_values():
    assert trend([-1.0, 0.0, 1.0]) == "▁▅█"  # negative losses (a WGAN's) are drawn too
    assert len(trend([float(i) for i in range(1000)])) == 24
    assert trend([1.0, math.nan, 2.0], width=3) == "▁✗█" and trend([]) == ""


def test_a_saved_report_shows_the_same_series():
    for tl in (detection_timeline(), gan_timeline()):
        report = Report(tl)
        assert text_of(read_back(report)) == text_of(report)


def test_torchdoctor_report_reads_the_series_back_from_the_json_file(tmp_path):
    path = tmp_path / "run.json"
    jsonreport.write(Report(gan_timeline()), path)
    shown = cli("report", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "dcgan.py · generation · 24 steps" in shown.stderr
    assert "  netG (generator)  " in shown.stderr and "loss per model" in shown.stderr


# -- HTML -----------------------------------------------------------------------------------------


def test_the_loss_plot_draws_the_total_and_each_term_with_a_legend(drawn):
    data = jsonreport.to_dict(Report(detection_timeline()))
    assert list(loss_plots.loss_series(data)) == ["total loss", *TERMS]
    page = render_html(data)
    loss_figure = next(labels for labels in drawn if "total loss" in labels)
    assert loss_figure == ["total loss", *TERMS, "validation loss"]
    assert "one line per series (total loss, loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg)" in page
    assert "detection · 24 steps" in page
    assert "Mean IoU" not in IMG_ALT.findall(page) and "Generator diversity" not in IMG_ALT.findall(page)


def test_a_gans_page_draws_each_model_and_the_generators_diversity(drawn):
    data = jsonreport.to_dict(Report(gan_timeline()))
    page = render_html(data)
    assert list(loss_plots.loss_series(data)) == ["netD (discriminator) loss", "netG (generator) loss"]
    assert ["netD (discriminator) loss", "netG (generator) loss"] in drawn
    assert ["generator output diversity (sampled steps)"] in drawn
    assert {"Loss", "Generator diversity"} <= set(IMG_ALT.findall(page))
    assert "generation · 24 steps" in page
    assert "✔ healthy: 24 steps, netD loss 1.4 → 0.05833, netG loss 0.7 → 5.3" in page
    assert render_html(jsonreport.to_dict(read_back(Report(gan_timeline())))) == page


def test_a_segmentation_page_draws_the_validation_mean_iou(drawn):
    data = jsonreport.to_dict(Report(segmentation_timeline()))
    assert loss_plots.iou_series(data) == [(12.0, 0.41), (24.0, 0.55)]
    page = render_html(data)
    assert "Mean IoU" in IMG_ALT.findall(page) and ["validation mean IoU"] in drawn
    assert "segmentation · 24 steps" in page
    assert loss_plots.loss_series(data) == {}  # one loss: the ordinary loss plot


def test_a_plain_page_is_unchanged_by_the_series():
    data = jsonreport.to_dict(Report(long_timeline()))
    assert loss_plots.loss_series(data) == {} and loss_plots.extra_plots(data) == []
    page = render_html(data)
    assert "Loss per step; dashed red lines" in page and "one line per series" not in page
    assert set(IMG_ALT.findall(page)) == {"Loss", "Accuracy", "Gradient flow", "Update-to-weight ratio"}
