"""What torchdoctor costs per training step, side by side with plain PyTorch and detect_anomaly.

    python benchmarks/overhead.py [--rounds 7] [--steps 40] [--threads 2]

Workloads: a small CNN and torchvision's ResNet-18, on CPU with a fixed thread count and
synthetic data. Modes: plain; torchdoctor's default as `torchdoctor run` uses it (discovery
through global hooks, no arguments); as `watch(model, optimizer)`; and
`torch.autograd.detect_anomaly()`. Rounds are interleaved (plain, run, watch, anomaly, then
the reverse, ...) so drift in the machine's speed hits every mode alike; each time is the median
step time over rounds, and each ratio the median over rounds of that round's ratio to plain.
Also: how many steps after a NaN appears torchdoctor reports it, and the import time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


def small_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    )
    return model, torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))


def resnet18() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    import torchvision

    return torchvision.models.resnet18(num_classes=10), torch.randn(16, 3, 64, 64), torch.randint(0, 10, (16,))


@contextlib.contextmanager
def mode(name: str, model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """plain, anomaly, run, watch, or `run-NAME`: `run` with the probe NAME switched off."""
    if name == "plain":
        yield
    elif name == "anomaly":
        with torch.autograd.detect_anomaly(check_nan=True):
            yield
    else:
        from torchdoctor.session import Doctor

        off = {name[4:]} if name.startswith("run-") else set()
        doctor = Doctor(model, optimizer, print_report=False) if name == "watch" else \
            Doctor(print_report=False, probes_off=off)
        with doctor:
            yield


def step_fn(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
            y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return step


WARMUP = 22


def timed(step: Callable[[], None], steps: int, warmup: int = WARMUP) -> float:
    """Median seconds per step over `steps` steps, after `warmup` untimed ones. torchdoctor
    samples memory at every one of a run's first 20 steps, then every 10th: the median of a
    real run (thousands of steps) is its steady state, which the warm-up reaches."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


MODES = ("plain", "run", "watch", "anomaly")


def timed_early(step: Callable[[], None], steps: int) -> float:
    """Mean seconds per step over a run's first `steps` steps, discovery and the dense sampling of
    the first steps included (no warm-up: the start is what is measured)."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def measure(make: Callable[[], tuple[nn.Module, torch.Tensor, torch.Tensor]], rounds: int,
            steps: int, modes: tuple[str, ...] = MODES,
            early: bool = False) -> tuple[dict[str, float], dict[str, tuple[float, float, float]]]:
    """Median step time per mode, and the median over rounds of each round's ratio to plain:
    the modes of one round run back to back, so a round's ratio is not moved by the machine
    getting slower or faster between rounds (on a shared 2-core VM it does, by 2x). `early`: the
    mean over a fresh model's first `steps` steps instead of the steady state."""
    results: dict[str, list[float]] = {m: [] for m in modes}
    model = optimizer = step = None
    for r in range(rounds):
        order = modes if r % 2 == 0 else tuple(reversed(modes))  # no mode always first after another
        for name in order:
            if early or step is None:  # a run's start is measured on a model torchdoctor has not seen
                torch.manual_seed(0)
                model, x, y = make()
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
                step = step_fn(model, optimizer, x, y)
            with mode(name, model, optimizer):
                results[name].append(timed_early(step, steps) if early else timed(step, steps))
    times = {name: statistics.median(values) for name, values in results.items()}
    ratios = {name: _quartiles([v / p for v, p in zip(values, results["plain"], strict=True)])
              for name, values in results.items()}
    return times, ratios


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


def nan_latency() -> int:
    """Steps between the first NaN loss and the step torchdoctor reports it at (0: the same step)."""
    from torchdoctor.session import Doctor

    torch.manual_seed(0)
    model, x, y = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with Doctor(print_report=False) as doctor:
        for i in range(12):
            batch = x.clone()
            if i == 7:
                batch[0, 0, 0, 0] = float("nan")
            optimizer.zero_grad()
            F.cross_entropy(model(batch), y).backward()
            optimizer.step()
    finding = doctor.report.by_code("nonfinite_loss")
    return finding.step - 7 if finding is not None else -1


def import_time(repeats: int = 5) -> tuple[float, float]:
    """Seconds to import torch, and then torchdoctor on top of it (what `torchdoctor run` and
    `import torchdoctor` add), timed inside fresh interpreters; medians of `repeats`. Timing the
    two in one interpreter keeps the torch import's own swing (0.5 s on a shared VM) out of the
    difference."""
    code = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            "import torchdoctor, torchdoctor.session; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    torch_s, ours_s = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        a, b = out.stdout.split()[-2:]
        torch_s.append(float(a))
        ours_s.append(float(b))
    return statistics.median(torch_s), statistics.median(ours_s)


def steady_allocator() -> None:
    """Keep freed activation memory in the heap instead of returning it to the system: glibc's
    default gives large blocks back and page-faults them in again on the next step, a cost that
    swings by milliseconds with the order of allocations and drowned the differences measured
    here. The same setting applies to every mode."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass  # not glibc: measure as is


def show(times: dict[str, float], ratios: dict[str, tuple[float, float, float]], modes: tuple[str, ...]) -> None:
    for m in modes:
        q1, median, q3 = ratios[m]
        print(f"    {m:8s} {times[m] * 1e3:8.2f} ms   {median:5.3f}x   (rounds' middle half {q1:5.3f}-{q3:5.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="cnn,resnet18", help="comma-separated: cnn, resnet18")
    parser.add_argument("--early", type=int, default=0, metavar="N",
                        help="also the mean over a run's first N steps (discovery and dense sampling), e.g. 200")
    parser.add_argument("--probes", action="store_true",
                        help="also `run` with each probe switched off in turn: what each costs")
    args = parser.parse_args()
    steady_allocator()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} threads, {args.rounds} interleaved rounds of {args.steps} steps "
          f"(after {WARMUP} warm-up steps), median step time")
    workloads = {"cnn": ("small CNN (32x3x32x32)", small_cnn), "resnet18": ("ResNet-18 (16x3x64x64)", resnet18)}
    for key in args.models.split(","):
        name, make = workloads[key.strip()]
        times, ratios = measure(make, args.rounds, args.steps)
        print(f"  {name}")
        show(times, ratios, MODES)
        if args.early:
            times, ratios = measure(make, args.rounds, args.early, ("plain", "run", "watch"), early=True)
            print(f"    over the first {args.early} steps:")
            show(times, ratios, ("plain", "run", "watch"))
        if args.probes:
            from torchdoctor.session import OPTIONAL_PROBES

            off = tuple(f"run-{p}" for p in OPTIONAL_PROBES)
            times, ratios = measure(make, args.rounds, args.steps, ("plain", "run", *off))
            print("    probe        run without it   its cost (run's ratio minus this one)")
            for m in off:
                print(f"    {m[4:]:12s} {ratios[m][1]:5.3f}x          {ratios['run'][1] - ratios[m][1]:+.3f}")
    print(f"  NaN reported {nan_latency()} steps after it appeared")
    torch_s, ours_s = import_time()
    print(f"  import torch {torch_s:.2f} s; then import torchdoctor +{ours_s:.3f} s "
          f"({ours_s / torch_s * 100:.0f}% of torch's; rich, matplotlib and psutil load only when used)")


if __name__ == "__main__":
    main()
