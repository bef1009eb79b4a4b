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

