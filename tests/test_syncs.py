"""On an accelerator every read of a device value by the host (`.item()`, `float(t)`, `.tolist()`,
`.cpu()`, a tensor made from host data on the device) waits for the device to finish its queue.
torchdoctor must add at most one such wait per training step.

No GPU here, so a stand-in: the recorder's CPU shortcut (reading the loss at once, free on CPU) is
switched off, which puts it on the path it takes on CUDA, and a TorchFunctionMode counts the host
reads whose caller is torchdoctor's code. On a GPU, torch.cuda.set_sync_debug_mode("warn") is the
real check.
"""

from __future__ import annotations

import collections
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import torchdoctor
from torchdoctor.recorder import readback
from torchdoctor.session import Doctor

OURS = os.path.dirname(torchdoctor.__file__)
TORCH = os.path.dirname(torch.__file__)
HOST_READS = {"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy", "nonzero",
              "masked_select"}


class HostReads(TorchFunctionMode):
    """Counts, per step, the host reads made by torchdoctor's code (the first frame outside torch)."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.reads: collections.Counter[int] = collections.Counter()
        self.where: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS or (name in ("tensor", "as_tensor") and kwargs and kwargs.get("device") is not None):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(TORCH):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(OURS):
                self.reads[self.step] += 1
                self.where.add(f"{os.path.relpath(frame.f_code.co_filename, OURS)}:{frame.f_lineno} {name}")
        return func(*args, **(kwargs or {}))


@pytest.fixture
def accelerator_path(monkeypatch):
    monkeypatch.setattr(readback, "EAGER_DEVICES", frozenset())


def model_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    return model, torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))


def test_at_most_one_host_read_per_step_with_amp_and_validation(accelerator_path):
    model, x, y = model_and_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    counter = HostReads()
    evaluated = []
    # 60 steps cover the sampled steps: memory every step at first, the breakdown at 0 and 50,
    # the update ratio every 10th, training accuracy.
    with Doctor(print_report=False) as doctor, counter:
        for step in range(60):
            counter.step = step
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if step % 20 == 19:
                model.eval()
                with torch.no_grad():
                    for _ in range(3):
                        F.cross_entropy(model(x), y)
                model.train()
                evaluated.append(step + 1)  # its numbers are read once, when training resumes
    reads = counter.reads
    assert reads[0] <= 2, counter.where  # the step's read-back, and the layer index made once on the device
    for step in range(1, 60):
        allowed = 2 if step in evaluated else 1
        assert reads[step] <= allowed, (step, reads[step], counter.where)
    # What the deferred reads carry still arrives: every scaler update, the update ratios, the losses.
    timeline = doctor.report.timeline
    assert timeline.amp.updates == 60
    assert sum(r.update_ratio is not None for r in timeline.steps) >= 6
    assert all(r.loss is not None for r in timeline.steps)
    assert len(timeline.evaluations) >= 2
    assert doctor.report.findings == []


def test_nan_on_the_accelerator_path_is_reported_at_its_step(accelerator_path):
    model, x, y = model_and_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    counter = HostReads()
    with Doctor(print_report=False) as doctor, counter:
        for step in range(12):
            counter.step = step
            batch = x.clone()
            if step == 7:
                batch[0, 0, 0, 0] = float("nan")
            opt.zero_grad()
            F.cross_entropy(model(batch), y).backward()
            opt.step()
    finding = doctor.report.by_code("nonfinite_loss")
    assert finding is not None and finding.step == 7
    assert finding.evidence["origin"] == "input"
    assert all(counter.reads[s] <= 1 for s in range(1, 7)), counter.where


def test_the_overhead_benchmark_runs_and_a_nan_is_reported_at_its_step():
    """The benchmark itself, each mode in its own process taking turns (its figures are in the
    README; no timing is asserted here)."""
    from benchmarks.overhead import REPO, measure, nan_latency

    labels = {"plain": ("plain", REPO), "run": ("run", REPO), "watch": ("watch", REPO)}
    times, ratios, where = measure("cnn", labels, windows=2, warmup=2, window=4, block=2)
    assert set(times) == set(labels) and all(t > 0 for t in times.values())
    assert ratios["plain"] == (1.0, 1.0, 1.0) and all(r[0] <= r[1] <= r[2] for r in ratios.values())
    assert set(where.values()) == {str(REPO)}  # each process trained with this tree's torchdoctor
    # The windows split between two sets of fresh processes, one after the other.
    times, ratios, _ = measure("cnn", {"plain": ("plain", REPO), "run": ("run", REPO)}, windows=2, warmup=2,
                               window=4, block=2, processes=2)
    assert all(t > 0 for t in times.values()) and ratios["plain"] == (1.0, 1.0, 1.0)
    assert nan_latency() == 0
