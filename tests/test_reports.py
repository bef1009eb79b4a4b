"""What people look at: the gradient report, a saved report shown again, live progress, and a
long run's history kept bounded."""

from __future__ import annotations

import html
import io
import json
import re
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console

import torchdoctor
from tests.conftest import EXAMPLES, cli, run_script
from torchdoctor import jsonreport
from torchdoctor.findings import Finding, Severity
from torchdoctor.formatting import sparkline
from torchdoctor.render import render
from torchdoctor.render.html import render_html
from torchdoctor.report import Report
from torchdoctor.timeline import Timeline


def text_of(report: Report, **options) -> str:
    buf = io.StringIO()
    render(report, Console(file=buf, width=160, color_system=None), **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def vanishing():
    return run_script(EXAMPLES / "vanishing_gradients.py", "--epochs", "1").report


@pytest.fixture(scope="module")
def exploding():
    return run_script(EXAMPLES / "exploding_gradients.py", "--epochs", "2").report


def test_the_gradient_report_lists_layers_in_model_order_and_marks_the_starved_ones(vanishing):
    layers = jsonreport.to_dict(vanishing)["gradients"]["layers"]
    assert [x["name"] for x in layers] == [layer.name for layer in vanishing.timeline.layers]
    first, last = layers[0], layers[-1]
    assert "vanishing_gradients" in first["flagged"] and not last["flagged"]
    assert first["norm_median"] < 1e-6 * last["norm_median"]
    assert first["update_ratio_median"] is not None and first["nonfinite_share"] == 0
    assert 2 <= len(first["trend"]) <= 16
    text = text_of(vanishing, findings=False, gradients=True)
    row = next(line for line in text.splitlines() if line.startswith(first["name"] + " "))
    assert "◀" in row and any(c in row for c in "▁▂▃▄▅▆▇█")
    assert f"◀ vanishing_gradients: {first['name']}," in text


def test_the_gradient_report_shows_where_gradients_went_non_finite(exploding):
    layers = jsonreport.to_dict(exploding)["gradients"]["layers"]
    assert all(x["nonfinite_share"] > 0.1 for x in layers)
    assert any("exploding_gradients" in x["flagged"] for x in layers)
    assert "✗" in sparkline(layers[0]["trend"])
    heatmap = jsonreport.to_dict(exploding)["gradients"]["heatmap"]
    assert len(heatmap["norms"]) == len(layers) and len(heatmap["norms"][0]) == len(heatmap["steps"]) <= 200


def test_sparkline_is_log_scaled():
    assert sparkline([1e-6, 1e-3, 1.0]) == "▁▅█"
    assert sparkline([]) == "" and sparkline([float("nan"), 1.0]) == "✗▁"


def test_a_saved_report_reads_back_to_the_same_terminal_report(exploding, tmp_path):
    path = tmp_path / "run.json"
    jsonreport.write(exploding, path)
    again = jsonreport.from_dict(json.loads(path.read_text()))
    assert again.codes() == exploding.codes()
    assert text_of(again, memory=True, gradients=True) == text_of(exploding, memory=True, gradients=True)


def test_the_cause_leads_in_the_terminal_and_the_html_and_the_banner_names_the_worst(exploding):
    """The explosion made the NaN: it is listed first, the NaN after it marked as its consequence
    (a `↳` line in the terminal, an indented article with a link to the cause in the HTML); the
    HTML banner still names the worst severity, critical, though an error leads."""
    codes = exploding.codes()
    assert codes.index("exploding_gradients") < codes.index("nonfinite_loss")
    nan = exploding.by_code("nonfinite_loss")
    assert nan.caused_by == "exploding_gradients"
    assert exploding.cause_of(nan) is exploding.by_code("exploding_gradients")
    text = text_of(exploding)
    assert text.index(" ERROR  exploding_gradients") < text.index("↳ CRITICAL  nonfinite_loss")
    explode_step = exploding.by_code("exploding_gradients").step
    assert f"  caused by exploding_gradients (step {explode_step}): {nan.cause_reason}\n" in text
    page = render_html(jsonreport.to_dict(exploding))
    assert "worst: critical" in page
    article = re.search(r'<article class="finding sev-critical consequence" id="finding-nonfinite_loss">.*?</article>',
                        page, re.S)
    assert article is not None
    assert (f'<div class="cause">↳ caused by <a href="#finding-exploding_gradients"><code>exploding_gradients</code>'
            f'</a> (step {explode_step}): {html.escape(nan.cause_reason)}</div>') in article.group(0)
    assert page.count(" consequence\"") == sum(1 for f in exploding.findings if f.caused_by)


def test_a_cause_is_the_nearest_finding_of_its_code_listed_before(tmp_path):
    """Two divergences (two phases): the dead units name the one before them; hostile text in a
    saved cause is escaped on the page."""
    first, second = (Finding("divergence", Severity.ERROR, f"diverged at {s}", step=s) for s in (5, 50))
    dead = Finding("dead_units", Severity.WARNING, "dead", step=60, caused_by="divergence", cause_reason="blow-up")
    report = Report(Timeline(), findings=[first, second, dead])
    assert report.cause_of(dead) is second and report.cause_of(first) is None
    assert report.leading([dead]) == [second, dead]
    evil = "<img src=x onerror=alert(1)>"
    data = jsonreport.to_dict(Report(Timeline(), findings=[
        first, Finding("dead_units", Severity.WARNING, "dead", step=60, caused_by=evil, cause_reason=evil)]))
    page = render_html(data)
    assert "<img src=x" not in page and page.count(html.escape(evil)) == 3


def test_the_report_command_shows_a_saved_run_and_writes_html(tmp_path):
    saved = tmp_path / "run.json"
    proc = cli("run", "-q", "--json", str(saved), str(EXAMPLES / "memory_budget.py"), "--steps", "1",
               "--batch-size", "8")
    assert proc.returncode == 0, proc.stderr
    html = tmp_path / "run.html"
    shown = cli("report", str(saved), "--memory-report", "--gradient-report", "--html", str(html))
    assert shown.returncode == 0, shown.stderr
    needles = ("memory_budget.py · classification · 1 steps", "share of peak", "block1", "gradients · ", "update/w")
    for needle in needles:
        assert needle in shown.stderr, needle
    assert html.stat().st_size > 10_000 and "<img" in html.read_text()


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "not a JSON report"),
    ('{"schema": "other/1"}', "not a torchdoctor report"),
])
def test_the_report_command_rejects_what_is_not_a_report_in_one_line(tmp_path, content, message):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    proc = cli("report", str(path))
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_live_progress_redraws_one_line_below_the_scripts_output(capsys):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    model = nn.Linear(8, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torchdoctor.watch(live=console, print_report=False):
        for step in range(30):
            loss = F.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 2, (16,)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step == 15:
                print("the script's own line")
            time.sleep(0.02)
    out = buf.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "torchdoctor ▸ step" in plain and "loss " in plain and "grad norm" in plain
    assert capsys.readouterr().out == "the script's own line\n"  # the script's own stream, untouched
    assert out.rstrip().endswith("\x1b[2K")  # transient: the line is erased at the end


def test_live_progress_is_off_when_the_output_is_not_a_terminal():
    proc = cli("run", str(EXAMPLES / "healthy_cnn.py"), "--epochs", "1")
    assert proc.returncode == 0
    assert "torchdoctor ▸" not in proc.stderr and "\x1b[" not in proc.stderr


def test_a_long_run_keeps_a_bounded_history(monkeypatch):
    monkeypatch.setattr("torchdoctor.timeline.MAX_STEPS", 300)
    monkeypatch.setattr("torchdoctor.timeline.RECENT_STEPS", 100)
    monkeypatch.setattr("torchdoctor.timeline.EARLY_STEPS", 100)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True)
    with torchdoctor.watch(model, optimizer, print_report=False) as doctor:
        for _ in range(2000):
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    steps = doctor.report.timeline.steps
    assert len(steps) <= 300 and steps[0].step == 0 and steps[-1].step == 1999
    assert [r.step for r in steps[-100:]] == list(range(1900, 2000))  # the recent ones all kept
    assert [r.step for r in steps[:100]] == list(range(100))  # and the first ones
    assert doctor.report.healthy, doctor.report.codes()
    assert len(doctor.report.timeline.memory.samples) <= 2000


def test_run_writes_the_html_report_and_a_bad_path_is_one_line(tmp_path):
    page = tmp_path / "run.html"
    proc = cli("run", "-q", "--html", str(page), str(EXAMPLES / "healthy_cnn.py"), "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert "healthy_cnn.py" in text and text.count("data:image/png;base64,") >= 3
    bad = cli("run", "--html", str(tmp_path / "missing" / "run.html"), str(EXAMPLES / "healthy_cnn.py"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--html" in bad.stderr


def test_live_progress_steps_aside_for_the_scripts_own_progress_bar(capsys):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    model = nn.Linear(8, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torchdoctor.watch(live=console, print_report=False) as doctor:
        import tqdm  # noqa: F401  (imported is not drawn: the live line stays)
        loss = F.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 2, (16,)))
        loss.backward()
        optimizer.step()
        assert doctor._progress.running
        print("\rstep 1", end="")  # the script draws a progress line in place
        assert not doctor._progress.running  # stepped aside, for good
    assert capsys.readouterr().out == "\rstep 1"
    assert doctor.report.timeline.steps
