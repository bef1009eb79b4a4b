"""A real JSON round trip: train a tiny model under `torchdoctor.watch`, write the report with
jsonreport.write, read the file back with jsonreport.from_dict, and render both.

What must agree: the findings report (plain and -v), the gradient and the memory reports, and the
JSON itself (the read-back report writes out the very data it was read from). The JSON does not
keep every step, the events or the probes' raw data, but the terminal reports draw only on what
it keeps, so the texts agree whole. The one run-dependent number the text shows, the duration, is
fixed before writing: it is stored to the millisecond and shown to a tenth, and a double rounding
(0.0495 s stored as 0.05, shown as 0.1 where 0.0495 shows as 0.0) would be the JSON's precision,
not the round trip, failing.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console

import torchdoctor
from torchdoctor import jsonreport
from torchdoctor.render import render
from torchdoctor.report import Report

VIEWS = {
    "findings": {},
    "verbose": {"verbose": True},
    "gradients and memory": {"findings": False, "gradients": True, "memory": True},
}


def text_of(report: Report, **options: bool) -> str:
    buf = io.StringIO()
    render(report, Console(file=buf, width=100, color_system=None, force_terminal=False), **options)
    return buf.getvalue()


def train(lr: float, epochs: int = 4) -> Report:
    """A small regression MLP on fixed data, evaluated on a held-out set after each epoch."""
    torch.manual_seed(0)
    x = torch.randn(320, 8)
    y = x.sum(dim=1, keepdim=True)
    train_x, train_y, val_x, val_y = x[:256], y[:256], x[256:], y[256:]
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with torchdoctor.watch(model, optimizer, print_report=False) as doctor:
        for _ in range(epochs):
            model.train()
            for i in range(0, 256, 32):
                loss = F.mse_loss(model(train_x[i:i + 32]), train_y[i:i + 32])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                F.mse_loss(model(val_x), val_y)
    report = doctor.report
    report.timeline.run.duration_s = 1.25
    return report


@pytest.fixture(scope="module")
def runs() -> dict[str, Report]:
    return {"blown up": train(lr=0.2), "healthy": train(lr=0.01)}


def read_back(report: Report, path: Path) -> tuple[Report, dict]:
    jsonreport.write(report, path)
    data = json.loads(path.read_text())
    return jsonreport.from_dict(data), data


def test_the_runs_are_what_the_round_trip_needs(runs):
    """Guards the tests below: one run with findings (NaN evidence included), one clean."""
    blown = runs["blown up"]
    assert {"nonfinite_loss", "exploding_gradients"} <= set(blown.codes()), blown.codes()
    assert not blown.healthy
    assert runs["healthy"].healthy and runs["healthy"].findings == [], runs["healthy"].codes()
    assert runs["healthy"].timeline.validation(), "the held-out evaluations were seen"


@pytest.mark.parametrize("run_name", ["blown up", "healthy"])
def test_a_written_report_reads_back_to_the_same_terminal_text(runs, run_name, tmp_path):
    original = runs[run_name]
    again, data = read_back(original, tmp_path / "run.json")
    assert again.codes() == original.codes()
    assert [f.severity for f in again.findings] == [f.severity for f in original.findings]
    assert again.healthy == original.healthy
    for view, options in VIEWS.items():
        assert text_of(again, **options) == text_of(original, **options), view
    assert jsonreport.to_dict(again) == data
    # The machine the run ran on travels with it (rules judge by it, not by the reader's machine).
    assert data["run"]["machine"]["cpu_count"] == os.cpu_count()
    assert again.timeline.run.cpu_count == os.cpu_count() and again.timeline.run.ram_bytes > 0


def test_a_multi_rank_report_keeps_its_ranks_line(runs, tmp_path):
    """run.ranks comes back as Report.ranks: a saved multi-process report re-renders how each rank ended."""
    ranks = [{"rank": 0, "status": "reported", "exit_status": 1, "exception": "RuntimeError: loss is NaN", "steps": 32},
             {"rank": 1, "status": "died", "exit_status": None, "exception": None}]
    original = replace(runs["blown up"], ranks=ranks)
    again, data = read_back(original, tmp_path / "run.json")
    assert data["run"]["ranks"] == ranks and data["run"]["failed_ranks"] == [0, 1]
    assert again.ranks is not None and again.failed_ranks() == [0, 1]
    text = text_of(again)
    assert "2 ranks: rank 0 exit 1 (RuntimeError: loss is NaN); rank 1 died without reporting" in text
    assert text == text_of(original)
    assert jsonreport.to_dict(again) == data


def test_caused_by_survives_the_round_trip(runs, tmp_path):
    """Every finding carries `caused_by` in the JSON (null when nothing explains it): the NaN of the
    blown-up run names the explosion that made it, is listed after it, and reads back so."""
    original = runs["blown up"]
    again, data = read_back(original, tmp_path / "run.json")
    assert all("caused_by" in f for f in data["findings"])
    written = {f["code"]: f["caused_by"] for f in data["findings"]}
    assert written["nonfinite_loss"] == "exploding_gradients" and written["exploding_gradients"] is None
    codes = [f["code"] for f in data["findings"]]
    assert codes.index("exploding_gradients") < codes.index("nonfinite_loss")
    assert [(f.code, f.caused_by, f.cause_reason) for f in again.findings] == \
        [(f.code, f.caused_by, f.cause_reason) for f in original.findings]
    assert again.by_code("nonfinite_loss").cause_reason == original.by_code("nonfinite_loss").cause_reason
    assert "caused by exploding_gradients" in text_of(again)
