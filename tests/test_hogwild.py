"""Hogwild training in forked torch.multiprocessing workers: observed in the workers, reported once.

The parent builds a shared model and trains nothing; each forked worker records its own timeline
and hands it back at exit (probes/workers.py), and the parent merges them (recorder/workers.py).
"""

from __future__ import annotations

from tests.conftest import SCRIPTS
from torchdoctor import Doctor

HOGWILD = SCRIPTS / "hogwild_mnist_like.py"


def run(*args: str):
    return Doctor(print_report=False).run(str(HOGWILD), list(args)).report


def test_healthy_hogwild_run_counts_every_worker_step_and_finds_nothing():
    report = run("--steps", "20")
    assert len(report.timeline.steps) == 40  # 2 workers x 20 steps
    assert [f for f in report.findings if f.severity.label != "info"] == []
    [workers] = [e.data for e in report.timeline.events_of("workers")]
    assert workers["count"] == 2 and workers["steps"] == [20, 20] and workers["merged"]
    assert report.internal_errors == []


def test_diverging_hogwild_run_is_reported_once():
    report = run("--lr", "50", "--steps", "20")
    codes = [f.code for f in report.findings]
    assert "nonfinite_loss" in codes and codes.count("nonfinite_loss") == 1, codes
    assert len(report.timeline.steps) == 40
