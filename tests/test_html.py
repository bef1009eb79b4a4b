"""The HTML report, rendered from real runs of the examples and opened in a real headless browser.

Each example runs once per module (fixtures below); each page is rendered once. The browser checks
are what a unit test cannot see: that the page loads offline, that every plot decodes as an image,
that the load script runs without errors, and that the page is not blank.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import os
import re
import shutil
import struct
import subprocess

import pytest

from tests.conftest import EXAMPLES, run_script
from torchdoctor.config import Config
from torchdoctor.jsonreport import to_dict
from torchdoctor.render.html import render_html, write_html

ALL_PLOTS = {"Loss", "Accuracy", "Gradient flow", "Update-to-weight ratio", "Memory timeline", "Memory breakdown"}
IMG = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"[^>]*\balt=\"([^\"]*)\"")


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    """Three runs that between them fill every section: NaN loss, validation+accuracy, a memory budget."""
    return {
        "exploding": to_dict(run_script(EXAMPLES / "exploding_gradients.py", "--epochs", "2").report),
        "overfitting": to_dict(run_script(EXAMPLES / "overfitting.py", "--epochs", "12").report),
        "memory": to_dict(run_script(EXAMPLES / "memory_budget.py", "--steps", "2",
                                     config=Config(memory_budget=96 * 2**20)).report),
    }


@pytest.fixture(scope="module")
def pages(reports) -> dict[str, str]:
    return {name: render_html(data) for name, data in reports.items()}


def _images(page: str) -> dict[str, str]:
    return {alt: src for src, alt in IMG.findall(page)}


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


# -- content --------------------------------------------------------------------------------------


def test_the_runs_found_what_the_pages_must_show(reports):
    """Guards the other tests: if an example stops producing its finding, they would test nothing."""
    codes = {name: [f["code"] for f in data["findings"]] for name, data in reports.items()}
    assert "nonfinite_loss" in codes["exploding"] and "exploding_gradients" in codes["exploding"]
    assert "overfitting" in codes["overfitting"]
    assert "memory_pressure" in codes["memory"]
    assert any(v == "nan" for _, v in reports["exploding"]["metrics"]["loss"]["train"])


def test_findings_fixes_and_snippets_are_on_the_page_escaped(reports, pages):
    for name, data in reports.items():
        page = pages[name]
        positions = []
        for finding in data["findings"]:
            assert f">{finding['code']}<" in page, (name, finding["code"])
            assert html.escape(finding["title"]) in page
            positions.append(page.index(html.escape(finding["title"])))
            assert finding["fixes"], finding["code"]
            for fix in finding["fixes"]:
                assert html.escape(fix["text"]) in page
                assert f">{fix['action']}<" in page
                if fix.get("snippet"):
                    assert f"<pre><code>{html.escape(fix['snippet'])}</code></pre>" in page
        assert positions == sorted(positions), "findings must stay worst first"
        assert positions[-1] < page.index("<img"), "findings come before the plots"


def test_evidence_sizes_and_non_finite_values_read_as_people_write_them(pages):
    assert "budget 96 MiB" in pages["memory"]
    assert re.search(r"peak:</span> 16\d MiB", pages["memory"])  # peak_bytes, not 176335136
    assert "value:</span> inf" in pages["exploding"] or "value:</span> nan" in pages["exploding"]
    assert "Not evaluated" in pages["exploding"] and "<code>overfitting</code>" in pages["exploding"]


def test_hostile_text_is_escaped_everywhere(reports):
    """Titles, fixes, layer names and reasons come from user code (module names, messages): never markup."""
    evil = "<img src=x onerror=alert(1)>&\"'"
    data = copy.deepcopy(reports["exploding"])
    data["findings"][0].update(title=evil, where=evil)
    data["findings"][0]["fixes"][0].update(text=evil, snippet=evil, action=evil)
    data["findings"][0]["evidence"]["origin"] = evil
    data["not_evaluated"] = {evil: evil}
    data["internal_errors"] = [evil]
    data["gradients"]["layers"][0]["name"] = evil
    data["run"]["argv"] = [f"/tmp/{evil}.py", evil]
    page = render_html(data)
    assert "<img src=x" not in page
    assert page.count(html.escape(evil)) >= 8


def test_the_page_is_self_contained(pages):
    for name, page in pages.items():
        assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I), name
        assert "http://" not in page and "https://" not in page, name
        assert "<link" not in page and "@import" not in page and "url(" not in page, name
        assert not re.search(r"<script[^>]*\bsrc=", page), name
        for src in _images(page).values():
            assert src.startswith("data:image/png;base64,"), src[:40]


def test_every_plot_is_an_embedded_png(pages):
    expected = {"exploding": ALL_PLOTS - {"Accuracy"}, "overfitting": ALL_PLOTS, "memory": ALL_PLOTS}
    for name, page in pages.items():
        images = _images(page)
        assert set(images) == expected[name], name
        for title, src in images.items():
            width, height = _png_size(base64.b64decode(src.removeprefix("data:image/png;base64,")))
            assert 900 <= width <= 1000 and 200 <= height <= 1300, (name, title, width, height)
    assert "Accuracy: not drawn (the run logged no accuracy)" in pages["exploding"]


def test_gradient_table_highlights_flagged_layers(reports, pages):
    layers = reports["exploding"]["gradients"]["layers"]
    flagged = [layer["name"] for layer in layers if layer["flagged"]]
    assert flagged
    rows = re.findall(r"<tr( class=\"flagged\")?><td class=\"l name\">([^<]*)</td>", pages["exploding"])
    assert [name for _, name in rows] == [layer["name"] for layer in layers]
    assert [name for cls, name in rows if cls] == flagged
    assert pages["exploding"].count("<svg class=\"spark\"") == len(layers)


def test_json_round_trip_renders_the_same_page(reports, pages, tmp_path):
    """A saved report (NaN as "nan", nulls) renders like the live one; two runs keep this test quick."""
    assert render_html(json.loads(json.dumps(reports["exploding"]))) == pages["exploding"]
    write_html(json.loads(json.dumps(reports["memory"])), tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == pages["memory"]


def test_healthy_banner_only_without_warnings(reports, pages):
    assert "banner healthy" not in pages["overfitting"] and "banner problem warning" in pages["overfitting"]
    data = copy.deepcopy(reports["overfitting"])
    data["findings"] = [f for f in data["findings"] if f["severity"] == "info"]
    assert "✔ healthy: " in render_html(data)


# -- a real browser -------------------------------------------------------------------------------


@pytest.fixture
def chromium(tmp_path):
    """Runs Debian's chromium headless with a throwaway profile and HOME; returns (stdout, stderr)."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")

    def run(*args: str) -> tuple[str, str]:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        done = subprocess.run(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--window-size=1200,5000", f"--user-data-dir={tmp_path / 'profile'}", *args],
            capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": str(home)},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout, done.stderr

    return run


def _console_errors(stderr: str) -> list[str]:
    """The page logs nothing itself, so any console line (or load failure) is a fault."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]


@pytest.mark.parametrize("name", ["exploding", "overfitting", "memory"])
def test_browser_loads_every_image_without_console_errors(pages, chromium, tmp_path, name):
    path = tmp_path / f"{name}.html"
    path.write_text(pages[name], encoding="utf-8")
    dom, stderr = chromium("--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
                           path.as_uri())
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    loaded = re.search(r"data-images-loaded=\"(\d+)\"", body.group(0))
    total = re.search(r"data-images-total=\"(\d+)\"", body.group(0))
    assert loaded and total, f"the load handler did not run: {body.group(0)}"
    assert int(loaded.group(1)) == int(total.group(1)) == len(_images(pages[name])) >= 4
    assert _console_errors(stderr) == []


def test_browser_screenshot_is_not_blank(pages, chromium, tmp_path):
    import matplotlib.image

    path = tmp_path / "exploding.html"
    path.write_text(pages["exploding"], encoding="utf-8")
    shot = tmp_path / "exploding.png"
    chromium(f"--screenshot={shot}", path.as_uri())
    assert shot.exists() and shot.stat().st_size > 50_000
    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (5000, 1200)
    assert pixels.std() > 0.05, "the screenshot is (almost) one colour"
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.05, "too little drawn on the page"



# -- one rule for the terminal and the page (hand-made reports) -----------------------------------

CARD = re.compile(r"<article class=\"finding [^\"]*\" id=\"finding-([a-z_]+)\">")
TERMINAL_FINDING = re.compile(r"^↳? ?(?:CRITICAL|ERROR|WARNING|INFO)  ([a-z_]+)", re.M)


def _shown_and_hidden(page: str) -> tuple[list[str], list[str]]:
    """The cards shown unasked, and those folded under the info toggle."""
    shown, _, folded = page.partition("<details class=\"more-findings\">")
    return CARD.findall(shown), CARD.findall(folded)


def _with_info_cause():
    from tests.test_terminal_golden import timeline
    from torchdoctor.findings import Finding, Fix, Severity
    from torchdoctor.report import Report
    from torchdoctor.rules.causes import link

    tl = timeline()
    raw = Finding("unnormalized_input", Severity.INFO, "Inputs range 0-255", step=0, evidence={"max": 255.0},
                  fixes=[Fix("normalize_input", "Divide the inputs by 255.")])
    saturated = Finding("saturated_activations", Severity.WARNING, "92% of act's outputs pinned", step=2,
                        where="act", evidence={"fraction": 0.92}, fixes=[Fix("normalize_input", "Divide by 255.")])
    return Report(tl, findings=link([saturated, raw], tl))


def test_the_terminal_and_the_page_show_and_count_the_same_findings():
    """Three problems and an info finding: both show the three, both hide the info one (the page
    folds it under a toggle, -v shows it in the terminal), both say "3 problems found"; an info
    finding that explains a problem is shown by both and counted as what it is."""
    from tests.test_terminal_golden import problem_report, text_of

    for report, count, hidden in [
        (problem_report(), "3 problems found (worst: critical)", ["dataloader_bottleneck"]),
        (_with_info_cause(), "1 problem found (worst: warning), with 1 info finding", []),
    ]:
        text, page = text_of(report), render_html(to_dict(report))
        shown_cards, folded = _shown_and_hidden(page)
        assert TERMINAL_FINDING.findall(text) == shown_cards, (text, shown_cards)
        assert folded == hidden and not any(code in text for code in hidden)
        banner = re.search(r"<div class=\"banner problem [a-z]+\">([^<]*)</div>", page).group(1)
        assert banner.startswith(count) and f"\n{count}" in text
        assert (len(shown_cards), len(folded)) == tuple(map(len, report.default_view()))
    verbose = text_of(problem_report(), verbose=True)
    assert "dataloader_bottleneck" in verbose and "3 problems found (worst: critical), with 1 info finding" in verbose


def test_the_banner_never_calls_an_interrupted_or_short_run_healthy():
    from tests.test_terminal_golden import healthy_report, interrupted_report, short_report
    from torchdoctor.jsonreport import from_dict

    data = to_dict(interrupted_report())
    assert data["run"]["interrupted"] == "Ctrl-C"
    assert from_dict(json.loads(json.dumps(data))).timeline.run.interrupted == "Ctrl-C"
    page = render_html(data)
    assert "interrupted at step 24 (Ctrl-C): judged on 24 steps" in page and "✔ healthy" not in page
    assert "1 info finding, not a problem (unfold below)" in page
    assert _shown_and_hidden(page) == ([], ["dataloader_bottleneck"])
    page = render_html(to_dict(short_report()))
    assert "judged on 6 steps: too few to call it healthy · loss 2.3 → 1.2" in page and "✔ healthy" not in page
    assert "✔ healthy: 24 steps" in render_html(to_dict(healthy_report()))


# -- what the plots draw --------------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch):
    """The lines of each figure the plots draw, read just before it is saved as PNG."""
    from torchdoctor.render import plots

    figures: list[list[dict]] = []
    save = plots._png

    def keep(fig):
        figures.append([{"label": line.get_label(), "x": list(line.get_xdata()), "y": list(line.get_ydata()),
                         "linestyle": line.get_linestyle(), "marker": line.get_marker(),
                         "ylabel": ax.get_ylabel()}
                        for ax in fig.axes for line in ax.get_lines() if not line.get_label().startswith("_")])
        figures[-1].append({"texts": [t.get_text() for ax in fig.axes for t in ax.texts]})
        return save(fig)

    monkeypatch.setattr(plots, "_png", keep)
    return figures


def test_sampled_training_accuracy_is_drawn_as_markers_only(drawn):
    from tests.test_terminal_golden import long_timeline
    from torchdoctor.render import plots
    from torchdoctor.report import Report

    tl = long_timeline()
    for record in tl.steps[::8]:
        record.accuracy = 0.25 + record.step / 100
    assert plots.accuracy_plot(to_dict(Report(tl))) is not None
    (train,) = [line for line in drawn[-1] if line.get("label", "").startswith("train accuracy")]
    assert train["linestyle"] == "None" and train["marker"] == "o"
    assert train["x"] == [0, 8, 16]  # only the steps measured: nothing drawn between them


def test_finding_labels_near_each_other_share_one_label():
    from torchdoctor.render.plots import label_groups

    groups = label_groups({0.0: ["unnormalized_input"], 0.5: ["dead_units"], 40.0: ["divergence"]}, 0, 100)
    assert groups == [(0.0, ["unnormalized_input", "dead_units"]), (40.0, ["divergence"])]


def test_the_memory_plot_draws_the_counter_the_leak_was_measured_by(drawn):
    """373 B a step of malloc's heap beside an RSS of 600 MiB: on one MiB axis the leak is a flat
    line; the plot draws the heap alone, as growth since its first sample, in bytes."""
    from tests.test_terminal_golden import long_timeline
    from torchdoctor.findings import Finding, Severity
    from torchdoctor.render import plots
    from torchdoctor.report import Report
    from torchdoctor.timeline import MemorySample

    tl = long_timeline()
    tl.memory.samples = [MemorySample(step=s, rss=600 * 2**20, heap=200 * 2**20 + 373 * s) for s in range(24)]
    leak = Finding("memory_leak", Severity.INFO, "Memory grows 373 B per step", evidence={
        "growth_per_step_bytes": 373, "measured_by": "malloc bytes in use"})
    data = to_dict(Report(tl, findings=[leak]))
    assert plots.leak_counter(data) == "heap_bytes"
    assert plots.memory_timeline_plot(data) is not None
    (line,) = drawn[-1][:-1]
    assert line["label"].startswith("malloc heap in use: growth since step 0") and line["ylabel"] == "KiB above step 0"
    assert line["y"][0] == 0 and line["y"][-1] == pytest.approx(373 * 23 / 1024)
    data["findings"] = []  # no leak named: every counter, in MiB
    plots.memory_timeline_plot(data)
    assert {line["label"] for line in drawn[-1][:-1]} == {"process RSS", "malloc heap in use"}
