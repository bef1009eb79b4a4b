"""dataloader_bottleneck on hand-made loader timings: a slow Dataset without workers, beside a fast
in-memory loader whose millisecond of collation per batch is no bottleneck."""

from __future__ import annotations

import os

import pytest

from tests.rules.timelines import findings, make_timeline
from torchdoctor.findings import Severity
from torchdoctor.timeline import Timeline

CPUS = 8


@pytest.fixture(autouse=True)
def eight_cpus(monkeypatch):
    """The rule caps num_workers at the CPU count. It used to read os.cpu_count() of the machine
    running the rule; pinned here so the numbers do not depend on the test machine. This fixture
    goes once the run info records the machine's cores (RunInfo.cpu_count, which loader_run sets)
    everywhere the rule is used."""
    monkeypatch.setattr(os, "cpu_count", lambda: CPUS)


def loader_run(batches: int = 100, wait_ms: float = 10.0, compute_ms: float = 4.0, num_workers: int = 0,
               device: str = "cpu", epochs: int | None = 1, dataset: str = "ImageFolder",
               pin_memory: bool = False, cpu_share: float | None = None) -> Timeline:
    """A run over one training DataLoader ("loader 1") as the recorder leaves it: the batches it
    yielded, the seconds spent inside next(iterator), its settings, the training time from the
    first batch to the last step (waiting plus computing), on a machine of 8 cores. `cpu_share`:
    the CPU time of the waits over their wall time (None: not measured, an older timeline)."""
    tl = make_timeline([1.0] * batches)
    tl.run.device, tl.run.epochs = device, epochs
    tl.run.cpu_count = CPUS  # the cores of the machine that trained
    habits = tl.habits
    habits.loaders["loader 1"] = {"batches": batches, "wait_s": batches * wait_ms / 1e3, "num_workers": num_workers,
                                  "pin_memory": pin_memory, "batch_size": 64, "dataset": dataset}
    if cpu_share is not None:
        habits.loaders["loader 1"]["wait_cpu_s"] = cpu_share * habits.loaders["loader 1"]["wait_s"]
    habits.train_loader = "loader 1"
    habits.train_time_s = batches * (wait_ms + compute_ms) / 1e3
    return tl


def test_a_slow_dataset_without_workers_is_found_with_the_workers_to_use():
    (finding,) = findings("dataloader_bottleneck", loader_run(wait_ms=10.0, compute_ms=4.0))
    assert finding.severity is Severity.WARNING and finding.where == "loader 1"
    ev = finding.evidence
    assert ev["wait_share"] == pytest.approx(10 / 14)
    assert ev["wait_ms_per_batch"] == pytest.approx(10.0) and ev["compute_ms_per_batch"] == pytest.approx(4.0)
    assert ev["num_workers"] == 0 and ev["batches"] == 100 and ev["dataset"] == "ImageFolder"
    fix = finding.fixes[0]
    # 10 ms of loading per 4 ms of training: ceil(2.5) workers keep up, one more for slack
    assert fix.action == "more_dataloader_workers" and fix.params == {"num_workers": 4, "pin_memory": False}
    assert "DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4)" in fix.snippet
    assert "71%" in finding.title and "num_workers=0" in finding.title


def test_on_a_gpu_over_epochs_the_fix_pins_memory_and_keeps_the_workers():
    (finding,) = findings("dataloader_bottleneck", loader_run(device="cuda:0", epochs=3))
    fix = finding.fixes[0]
    assert fix.params == {"num_workers": 4, "pin_memory": True, "persistent_workers": True}
    assert "num_workers=4, pin_memory=True, persistent_workers=True)" in fix.snippet


def test_the_workers_are_capped_at_the_cpu_count():
    (finding,) = findings("dataloader_bottleneck", loader_run(wait_ms=50.0, compute_ms=2.0))
    assert finding.fixes[0].params["num_workers"] == CPUS  # 26 would keep up; 8 cores are all there is
    (finding,) = findings("dataloader_bottleneck", loader_run(wait_ms=50.0, compute_ms=2.0, cpu_share=0.9))
    assert finding.fixes[0].params["num_workers"] == CPUS and not finding.evidence["waits_on_io"]


def test_a_loader_waiting_on_io_gets_more_workers_than_cpus():
    # 50 ms per batch of which 5 ms on the CPU: the items wait on disk or network, which workers overlap
    (finding,) = findings("dataloader_bottleneck", loader_run(wait_ms=50.0, compute_ms=5.0, cpu_share=0.1))
    fix = finding.fixes[0]
    assert finding.evidence["waits_on_io"] and fix.params["num_workers"] == 11  # ceil(50 / 5) + 1
    assert "more than the 8 CPUs" in fix.text
    (finding,) = findings("dataloader_bottleneck", loader_run(wait_ms=200.0, compute_ms=2.0, cpu_share=0.0))
    assert finding.fixes[0].params["num_workers"] == 16  # max_io_workers


def test_too_few_workers_are_doubled():
    (finding,) = findings("dataloader_bottleneck", loader_run(num_workers=4))
    assert finding.evidence["num_workers"] == 4
    assert finding.fixes[0].params["num_workers"] == 8  # already 4, the estimate: double them
    (finding,) = findings("dataloader_bottleneck", loader_run(num_workers=2))
    assert finding.fixes[0].params["num_workers"] == 4  # fewer than the estimate: the estimate


def test_a_fast_in_memory_loader_is_clean():
    # a TensorDataset and a tiny model: waiting is most of the time, but 1 ms per batch is collation
    tl = loader_run(wait_ms=1.0, compute_ms=0.5, dataset="TensorDataset")
    assert findings("dataloader_bottleneck", tl) == []
    assert len(findings("dataloader_bottleneck", tl, min_wait_ms=0.5)) == 1


def test_a_slow_loader_that_is_a_small_share_of_the_step_is_clean():
    tl = loader_run(wait_ms=10.0, compute_ms=30.0)  # 25% of the time: the model is the bottleneck
    assert findings("dataloader_bottleneck", tl) == []
    assert len(findings("dataloader_bottleneck", tl, max_wait_share=0.2)) == 1


def test_a_few_batches_give_no_verdict():
    tl = loader_run(batches=6)
    assert findings("dataloader_bottleneck", tl) == []
    assert len(findings("dataloader_bottleneck", tl, min_batches=5)) == 1


def test_tensors_fed_directly_and_an_empty_timeline_are_clean():
    tl = loader_run()
    tl.habits.train_loader = None  # batches sliced from tensors, no DataLoader
    assert findings("dataloader_bottleneck", tl) == []
    assert findings("dataloader_bottleneck", Timeline()) == []
