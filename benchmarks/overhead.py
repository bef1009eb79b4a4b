"""What torchdoctor costs per training step, side by side with plain PyTorch and detect_anomaly.

    python benchmarks/overhead.py [--windows 12] [--processes 1] [--threads 2] [--models cnn,resnet18]
                                  [--early 200] [--probes] [--baseline DIR]

Workloads: a small CNN and torchvision's ResNet-18 (`--models` adds `mlp`, the MNIST tutorial's MLP,
and `tutorial`, ten_second_run.py's network), on CPU with a fixed thread count and synthetic data.
Modes: plain; torchdoctor's default as `torchdoctor run` uses it (discovery through global hooks, no
arguments); as `watch(model, optimizer)`; `torch.autograd.detect_anomaly()`; with `--baseline DIR`,
`run` and `watch` of the torchdoctor package in DIR too (the previous commit: `git archive HEAD~1
torchdoctor | tar -x -C DIR`); with `--probes`, `run` with each optional probe switched off in turn,
and with all of them off.

Each mode trains in a process of its own, and the processes take turns, BLOCK steps each, in an
order reversed at every turn: the machine's drift (a shared VM's speed swings by 2x within
seconds) hits every mode within a fraction of a second of the others. A window is WINDOW steps
of every mode; a mode's ratio in a window is its time over plain's in the same window, and each
figure is the median over windows, with the middle half of the windows beside it. A window holds
every sampled step in its share (the gradient norms of one step in five, the statistics of one in
fifty, the activations of one in a hundred). Steady state starts after WARMUP steps, past the
dense sampling of a run's first steps; `--early N` measures a fresh run's first N steps instead
(discovery and dense sampling included), over `--windows` fresh runs. `--processes N` splits the
windows between N sets of fresh processes, one set after the other: a process's own luck shifts
all its windows alike (two plain processes differ by up to 3% on a shared VM), and only a new
process draws again.
Also: how many steps after a NaN appears torchdoctor reports it, and the import time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
WARMUP = 110  # past every dense phase: norms of every step to 50, activations at 1-50
BLOCK = 10
WINDOW = 100


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


def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The MNIST tutorial's size, a step of about a millisecond: torchdoctor's fixed cost per step
    at its largest share (not in the default --models; give --window 1000)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return model, torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))


def tutorial() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """benchmarks/ten_second_run.py's network (the CIFAR-10 tutorial's): its steps without the
    DataLoader, the per-step part of what whole_run.py measures."""
    from ten_second_run import Net  # beside this file, which runs as a script

    return Net(), torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))


WORKLOADS = {"cnn": ("small CNN (32x3x32x32)", small_cnn), "resnet18": ("ResNet-18 (16x3x64x64)", resnet18),
             "mlp": ("MLP 784-128-10 (64x1x28x28)", mlp),
             "tutorial": ("CIFAR-10 tutorial's Net (32x3x32x32)", tutorial)}
MODES = ("plain", "run", "watch", "anomaly")
# A second plain process, beside the first: its ratio is the measurement's own noise and bias.
NOISE = "plain again"


@contextlib.contextmanager
def mode(name: str, model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """plain, anomaly, run, watch, or `run-A,B`: `run` with the optional probes A and B off."""
    if name == "plain":
        yield
    elif name == "anomaly":
        with torch.autograd.detect_anomaly(check_nan=True):
            yield
    else:
        from torchdoctor.session import Doctor

        off = set(name[4:].split(",")) if name.startswith("run-") else set()
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


# -- one mode's process ---------------------------------------------------------------------------
def worker(name: str, workload: str, threads: int) -> None:
    """Reads commands from stdin: `new` (a fresh model, the mode entered anew), `steps N` (train N
    steps, answer their seconds), `quit`. Answers one line each on stdout."""
    steady_allocator()
    torch.set_num_threads(threads)
    make = WORKLOADS[workload][1]
    stack = contextlib.ExitStack()
    step: Callable[[], None] | None = None
    out = sys.__stdout__
    sys.stdout = sys.stderr  # whatever the mode prints must not reach the protocol
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "new":
            stack.close()
            torch.manual_seed(0)
            model, x, y = make()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            step = step_fn(model, optimizer, x, y)
            stack = contextlib.ExitStack()
            stack.enter_context(mode(name, model, optimizer))
            import torchdoctor

            answer = str(Path(torchdoctor.__file__).parent.parent)
        elif command == "steps" and step is not None:
            start = time.perf_counter()
            for _ in range(int(arg[0])):
                step()
            answer = repr(time.perf_counter() - start)
        else:
            break
        out.write(answer + "\n")
        out.flush()
    stack.close()


@dataclass
class Worker:
    label: str
    mode: str
    process: subprocess.Popen
    log: object
    times: list[float] = field(default_factory=list)  # seconds per window

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            self.log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"{self.label} stopped: {self.log.read()[-2000:]}")  # type: ignore[attr-defined]
        return answer.strip()


def start(label: str, name: str, workload: str, threads: int, package: Path) -> Worker:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")]))}
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, __file__, "--worker", name, "--models", workload,
                                "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=log, text=True, env=env)
    return Worker(label, name, process, log)


def turns(workers: list[Worker], steps: int, block: int, seed: int = 0) -> list[float]:
    """Every worker trains `steps` steps, `block` at a time, in turn; the seconds each took. The
    order is shuffled at each turn, and never lets a process run two blocks back to back: one
    that does finds its caches warm (the first such order tried, A..F then F..A, made plain 4%
    faster than a second plain process)."""
    shuffle = random.Random(seed)
    spent = [0.0] * len(workers)
    last = None
    for _ in range(max(1, steps // block)):
        order = list(range(len(workers)))
        shuffle.shuffle(order)
        if order[0] == last and len(order) > 1:
            order[0], order[-1] = order[-1], order[0]
        for i in order:
            spent[i] += float(workers[i].ask(f"steps {min(block, steps)}"))
        last = order[-1]
    return spent


def measure(workload: str, labels: dict[str, tuple[str, Path]], windows: int, threads: int = 2,
            early: int = 0, warmup: int = WARMUP, window: int = WINDOW, block: int = BLOCK,
            processes: int = 1) -> tuple[dict[str, float], dict[str, tuple[float, float, float]], dict[str, str]]:
    """Per label (mode, package dir): median seconds per step, and (first quartile, median, third
    quartile) of the windows' ratios to `plain`; and where each process found torchdoctor.

    With `processes` > 1 the windows are split between that many sets of fresh processes, one set
    after the other: a process's own luck (where its memory landed, which core it started on)
    shifts all of its windows alike, by up to 3% between two plain processes on a shared VM, and
    only new processes average it out."""
    per_window: list[list[float]] = []
    where: dict[str, str] = {}
    for k in range(processes):
        share = windows // processes + (1 if k < windows % processes else 0)
        if share:
            spent, where = _windows(workload, labels, share, threads, early, warmup, window, block, seed=k)
            per_window += spent
    steps = early or window
    plain = [spent[0] for spent in per_window]
    times, ratios = {}, {}
    for i, label in enumerate(labels):
        mine = [spent[i] for spent in per_window]
        times[label] = statistics.median(mine) / steps
        ratios[label] = _quartiles([m / p for m, p in zip(mine, plain, strict=True)])
    return times, ratios, where


def _windows(workload: str, labels: dict[str, tuple[str, Path]], windows: int, threads: int, early: int,
             warmup: int, window: int, block: int, seed: int) -> tuple[list[list[float]], dict[str, str]]:
    """One set of processes, one per label: each window's seconds per label, in the labels' order."""
    workers = [start(label, name, workload, threads, package) for label, (name, package) in labels.items()]
    try:
        where = {w.label: w.ask("new") for w in workers}
        per_window: list[list[float]] = []
        if early:
            for k in range(windows):  # each window: a fresh run's first `early` steps
                if k:
                    for w in workers:
                        w.ask("new")
                per_window.append(turns(workers, early, block, 1000 * seed + k))
        else:
            turns(workers, warmup, block, -1 - seed)
            per_window = [turns(workers, window, block, 1000 * seed + k) for k in range(windows)]
    finally:
        for w in workers:
            with contextlib.suppress(Exception):
                w.ask("quit")
            w.process.wait(timeout=60)
    return per_window, where


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


# -- other figures --------------------------------------------------------------------------------
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
    difference. Byte-compiled files are allowed (as pip's install writes them): an environment
    with PYTHONDONTWRITEBYTECODE compiles every module of torchdoctor at each start, +0.2 s."""
    code = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            "import torchdoctor, torchdoctor.session; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    torch_s, ours_s = [], []
    for _ in range(repeats + 1):  # the first may write the byte-compiled files
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        a, b = out.stdout.split()[-2:]
        torch_s.append(float(a))
        ours_s.append(float(b))
    return statistics.median(torch_s[1:]), statistics.median(ours_s[1:])


def show(times: dict[str, float], ratios: dict[str, tuple[float, float, float]]) -> None:
    for label, (q1, median, q3) in ratios.items():
        print(f"    {label:16s} {times[label] * 1e3:8.2f} ms   {median:5.3f}x   "
              f"(middle half of windows {q1:5.3f}-{q3:5.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=12, help="windows per mode")
    parser.add_argument("--window", type=int, default=WINDOW, help="steps of each mode in a window")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="split the windows between N sets of fresh processes, one after the other")
    parser.add_argument("--models", default="cnn,resnet18", help="comma-separated: cnn, resnet18, mlp, tutorial")
    parser.add_argument("--early", type=int, default=0, metavar="N",
                        help="also the mean over a fresh run's first N steps (discovery and dense sampling), e.g. 200")
    parser.add_argument("--probes", action="store_true",
                        help="also `run` with each optional probe switched off in turn: what each costs")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run and watch with the torchdoctor package in DIR (an older commit's)")
    parser.add_argument("--no-anomaly", action="store_true", help="leave detect_anomaly out (it is slow)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.processes <= args.windows:
        parser.error("--processes must be between 1 and --windows")
    if args.worker:
        worker(args.worker, args.models, args.threads)
        return
    steady_allocator()
    torch.set_num_threads(args.threads)
    modes = {m: (m, REPO) for m in MODES if not (args.no_anomaly and m == "anomaly")}
    modes[NOISE] = ("plain", REPO)
    if args.baseline is not None:
        modes.update({f"{m} (baseline)": (m, args.baseline.resolve()) for m in ("run", "watch")})
    print(f"CPU, {args.threads} threads; each mode in its own process, turns of {BLOCK} steps; "
          f"{args.windows} windows of {args.window} steps after {WARMUP} warm-up steps; median step time")
    for key in args.models.split(","):
        name = WORKLOADS[key.strip()][0]
        times, ratios, where = measure(key.strip(), modes, args.windows, args.threads, window=args.window,
                                       processes=args.processes)
        print(f"  {name}")
        show(times, ratios)
        if args.baseline is not None:
            print(f"    (baseline from {where['run (baseline)']}, this tree from {where['run']})")
        if args.early:
            early_modes = {k: v for k, v in modes.items() if v[0] != "anomaly"}
            times, ratios, _ = measure(key.strip(), early_modes, args.windows, args.threads, early=args.early,
                                        processes=args.processes)
            print(f"    over a fresh run's first {args.early} steps ({args.windows} runs):")
            show(times, ratios)
        if args.probes:
            from torchdoctor.probes.optional import OPTIONAL_PROBES

            off = {f"without {p}": (f"run-{p}", REPO) for p in OPTIONAL_PROBES}
            off["core only"] = ("run-" + ",".join(OPTIONAL_PROBES), REPO)
            times, ratios, _ = measure(key.strip(), {"plain": ("plain", REPO), NOISE: ("plain", REPO),
                                                     "run": ("run", REPO), **off},
                                       args.windows, args.threads, window=args.window,
                                       processes=args.processes)
            run = ratios["run"][1]
            print(f"    run {run:5.3f}x; each optional probe's cost is run's ratio minus run's without it")
            print("    probe        run without it   its cost   (middle half of windows)")
            for label in off:
                q1, median, q3 = ratios[label]
                print(f"    {label.removeprefix('without '):12s} {median:5.3f}x          {run - median:+.3f}      "
                      f"({q1:5.3f}-{q3:5.3f}x)")
    print(f"  NaN reported {nan_latency()} steps after it appeared")
    torch_s, ours_s = import_time()
    print(f"  import torch {torch_s:.2f} s; then import torchdoctor +{ours_s:.3f} s "
          f"({ours_s / torch_s * 100:.0f}% of torch's; rich, matplotlib and psutil load only when used)")


if __name__ == "__main__":
    main()
