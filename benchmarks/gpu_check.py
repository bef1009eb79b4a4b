"""Every CUDA path of torchdoctor, exercised on a real GPU in one short run (issue 19).

    python benchmarks/gpu_check.py      # on a machine with a CUDA device: under 5 minutes

Prints the date, the GPU and torch, one line per check (`PASS|FAIL|SKIP <check>: <numbers>`) and a
summary; exits 1 when a check fails, else 0. Without CUDA every check says SKIP and it exits 0, so it
runs anywhere (tests/test_gpu_check.py). A check that raises prints FAIL with the exception and the
others still run; past 4.5 minutes no new check starts. `--device cpu` runs the checks' code on the
CPU at small sizes: a smoke test of this script only (the CUDA expectations fail there by design).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from anywhere: torchdoctor is the checkout's
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import torchdoctor  # noqa: E402
from torchdoctor.config import Config  # noqa: E402
from torchdoctor.formatting import format_bytes  # noqa: E402
from torchdoctor.heal.snapshot import Snapshot  # noqa: E402
from torchdoctor.recorder import readback  # noqa: E402
from torchdoctor.session import Doctor  # noqa: E402

TIME_BUDGET_S = 270.0  # no check starts after this: the whole run stays under 5 minutes
MAX_OVERHEAD = 1.05
OURS = os.path.dirname(os.path.abspath(torchdoctor.__file__))
TORCH = os.path.dirname(os.path.abspath(torch.__file__))
THIS = os.path.abspath(__file__)
HOST_READS = {"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy", "nonzero",
              "masked_select"}
# (batch and width of the memory MLP, ResNet batch, image side, warm-up steps, timed steps, rounds)
# per device; the CPU sizes only make the smoke test quick. The warm-up passes the first 50 steps,
# where every step's gradient norms are read: the timed steps are the steady state.
SIZES = {"cuda": (16384, 1024, 64, 224, 60, 50, 3), "cpu": (4096, 256, 4, 64, 2, 3, 1)}


class Skip(Exception):
    """The check cannot run here (said in its SKIP line); not a failure."""


Check = Callable[[torch.device], tuple[bool, str]]


def settle(dev: torch.device) -> None:
    """Free what the previous check left and restart the allocator's peak: each check is measured alone."""
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


# -- 1. memory_pressure ----------------------------------------------------------------------------
def deep_mlp(width: int = 1024, depth: int = 12) -> nn.Module:
    """Activations far larger than the weights: a budget of half the step leaves room for a smaller batch."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def check_memory_pressure(dev: torch.device) -> tuple[bool, str]:
    batch, width = SIZES[dev.type][:2]
    torch.manual_seed(0)
    model = deep_mlp(width).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, width, device=dev), torch.randint(0, 10, (batch,), device=dev)
    step = train_step(model, opt, x, y)
    if dev.type == "cuda":  # the step as the caching allocator holds it, what memory_pressure reads on CUDA
        step()
        step()
        torch.cuda.synchronize(dev)
        measured = int(torch.cuda.max_memory_reserved(dev))
    else:
        with Doctor(model, opt, config=Config(memory_budget=2**50), print_report=False) as probe:
            step()
        measured = probe.report.timeline.memory.profile.step_total
    budget = measured // 2
    with Doctor(model, opt, config=Config(memory_budget=budget), print_report=False) as doctor:
        for _ in range(5):
            step()
    report = doctor.report
    finding = report.by_code("memory_pressure")
    capacity = report.timeline.memory.capacity
    card = torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda" else None
    if finding is None:
        return False, f"no memory_pressure finding; step {format_bytes(measured)}, budget {format_bytes(budget)}, " \
                      f"codes {[f.code for f in report.findings]}"
    ev = finding.evidence
    fix = next((f for f in finding.fixes if f.action == "reduce_batch_size"), None)
    fits = fix.params["batch_size"] if fix is not None else None
    ok = (ev["limit_source"] == "--memory-budget" and ev["limit_bytes"] == budget and fix is not None
          and 0 < fits < batch and capacity == card)
    info = (f"step {format_bytes(measured)}, budget {format_bytes(budget)}, peak seen {format_bytes(ev['peak_bytes'])} "
            f"({ev['share']:.0%}, {finding.severity.name}), batch fix {fits} of {batch}, "
            f"fixes {[f.action for f in finding.fixes]}, capacity {capacity} vs card {card}")
    if dev.type == "cuda":
        info += f" (mem_get_info total {torch.cuda.mem_get_info(dev)[1]})"
    return ok, info


# -- 2. a real out-of-memory -------------------------------------------------------------------------
OOM_SCRIPT = '''import sys
import torch
import torch.nn as nn
import torch.nn.functional as F

class Boom(nn.Module):
    armed = False
    def forward(self, x):
        if self.armed:  # far more than the device has: the allocation fails before using any
            x = x + torch.empty(int(sys.argv[1]), dtype=torch.uint8, device=x.device)[:1].float()
        return x

torch.manual_seed(0)
device = torch.device(sys.argv[2])
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), Boom(), nn.Linear(128, 10)).to(device)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(5):
    model[2].armed = step == 3
    x, y = torch.randn(32, 64, device=device), torch.randint(0, 10, (32,), device=device)
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
'''
OOM_PARAM_BYTES = (64 * 128 + 128 + 128 * 10 + 10) * 4


def check_out_of_memory(dev: torch.device) -> tuple[bool, str]:
    if dev.type == "cuda":
        free, total = (int(v) for v in torch.cuda.mem_get_info(dev))
        request = int(free * 1.5)
    else:
        free, total, request = 0, 0, 2**47
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "oom_step.py"
        path.write_text(OOM_SCRIPT)
        with contextlib.redirect_stderr(io.StringIO()):  # the script's traceback: its finding says it
            result = Doctor(print_report=False).run(str(path), [str(request), dev.type])
    settle(dev)
    finding = result.report.by_code("out_of_memory")
    if finding is None:
        return False, f"no out_of_memory finding; script status {result.script_status}, " \
                      f"codes {[f.code for f in result.report.findings]}"
    ev = finding.evidence
    requested = ev["requested_bytes"] or 0
    close = abs(requested - request) <= 0.01 * request
    actions = [f.action for f in finding.fixes]
    ok = (result.script_status == 1 and finding.step == 3 and ev["phase"] == "forward" and finding.where == "2"
          and ev["device"] == dev.type and close and ev["breakdown"].get("parameters") == OOM_PARAM_BYTES
          and (dev.type != "cuda" or request <= total or "fix_allocation_size" in actions))
    return ok, (f"step {finding.step}, phase {ev['phase']}, module {finding.where}, device {ev['device']}, "
                f"requested {format_bytes(requested)} of {format_bytes(request)} asked (free {format_bytes(free)}, "
                f"total {format_bytes(total)}), limit {format_bytes(ev['limit_bytes'])}, parameters "
                f"{ev['breakdown'].get('parameters')} (expected {OOM_PARAM_BYTES}), fixes {actions}")


# -- 3. fp16 autocast and a GradScaler that skips steps ------------------------------------------------
def amp_run(dev: torch.device, poisoned: bool, steps: int = 60) -> tuple[object, list[int]]:
    """60 steps of fp16 autocast with a GradScaler starting at 2**24 (it overflows and skips while it
    calibrates); `poisoned`: an inf in every batch, so every step is skipped. Returns the report and
    the steps whose update lowered the scale, as the scaler itself says."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler(dev.type, init_scale=2.0**24)
    x, y = torch.randn(128, 64, device=dev), torch.randint(0, 10, (128,), device=dev)
    if poisoned:
        x[0, 0] = float("inf")
    lowered = []
    with Doctor(model, opt, print_report=False) as doctor:
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.float16):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            before = scaler.get_scale()
            scaler.update()
            if scaler.get_scale() < before:
                lowered.append(step)
    return doctor.report, lowered


def check_amp(dev: torch.device) -> tuple[bool, str]:
    report, lowered = amp_run(dev, poisoned=False)
    amp = report.timeline.amp
    codes = sorted({f.code for f in report.findings})
    calm = (amp.updates == 60 and len(lowered) >= 1 and amp.skipped == len(lowered)
            and len(amp.skipped_steps) == amp.skipped and "amp_overflow" not in codes
            and "nonfinite_gradient" not in codes)
    bad, bad_lowered = amp_run(dev, poisoned=True)
    alarm = bad.by_code("amp_overflow")
    fired = alarm is not None and bad.timeline.amp.skipped == 60 and alarm.evidence["lowest_scale"] < 1
    return calm and fired, (
        f"calibrating: {amp.updates} updates, {amp.skipped} skipped in the timeline at {amp.skipped_steps[:12]}, "
        f"scaler lowered at {lowered[:12]}, last scale {amp.scales[-1][1] if amp.scales else None}, codes {codes}; "
        f"inf every step: {bad.timeline.amp.skipped} of {bad.timeline.amp.updates} skipped "
        f"(scaler: {len(bad_lowered)}), amp_overflow {'fired' if alarm else 'silent'}"
        + (f", lowest scale {alarm.evidence['lowest_scale']:.3g}" if alarm else ""))


# -- 4. one host read per step ------------------------------------------------------------------------
def blame(frame) -> bool:  # noqa: ANN001
    """True when the innermost frame outside torch, the warnings machinery and this file is torchdoctor's."""
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if name.startswith(OURS):
            return True
        if not (name.startswith(TORCH) or name == THIS or os.path.basename(name) in ("warnings.py", "_py_warnings.py")):
            return False
        frame = frame.f_back
    return False


class HostReads(TorchFunctionMode):
    """Counts, per step, the host reads torchdoctor's code makes (as tests/test_syncs.py does on CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.step = -1
        self.reads: Counter[int] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = getattr(func, "__name__", "")
        if self.step >= 0 and (name in HOST_READS or (name in ("tensor", "as_tensor") and kwargs
                                                      and kwargs.get("device") is not None)):
            if blame(sys._getframe(1)):
                self.reads[self.step] += 1
        return func(*args, **(kwargs or {}))


def check_host_reads(dev: torch.device) -> tuple[bool, str]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler(dev.type)
    x, y = torch.randn(64, 3, 32, 32, device=dev), torch.randint(0, 10, (64,), device=dev)
    first, last = 30, 60  # steady state: discovery and the dense first samples are over; 50 is a profiled step
    counter = HostReads()
    syncs: Counter[int] = Counter()
    ours: Counter[int] = Counter()

    def on_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if counter.step >= 0 and "synchroniz" in str(message):
            syncs[counter.step] += 1
            if blame(sys._getframe(1)):
                ours[counter.step] += 1

    def run_steps() -> None:
        with torchdoctor.watch(model, opt, print_report=False), counter:
            for step in range(last + 1):
                if step == first and dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                    torch.cuda.set_sync_debug_mode("warn")
                counter.step = step if step >= first else -1
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.float16 if dev.type == "cuda" else torch.bfloat16):
                    loss = F.cross_entropy(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            counter.step = -1
            if dev.type == "cuda":  # the end of the watch reads what is left: not a step's
                torch.cuda.set_sync_debug_mode(0)

    eager = readback.EAGER_DEVICES
    if dev.type == "cpu":  # the smoke test: the path CUDA takes, as tests/test_syncs.py does
        readback.EAGER_DEVICES = frozenset()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = on_warning
        try:
            run_steps()
        finally:
            readback.EAGER_DEVICES = eager
            if dev.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
    counted = range(first + 1, last + 1)  # the first step with the mode on may carry the read of the one before
    warned = statistics.mean(ours[s] for s in counted)
    read = statistics.mean(counter.reads[s] for s in counted)
    info = (f"steps {counted.start}-{counted.stop - 1}: torchdoctor's synchronizing ops {warned:.2f}/step "
            f"(max {max(ours[s] for s in counted)}, step {first}: {ours[first]}), all sync warnings "
            f"{statistics.mean(syncs[s] for s in counted):.2f}/step, host reads by torchdoctor {read:.2f}/step "
            f"(max {max(counter.reads[s] for s in counted)})")
    if dev.type == "cuda" and not any(ours[s] for s in counted):
        return False, info + ": sync debug mode reported none of torchdoctor's reads, so nothing was checked"
    return warned <= 1.0 and read <= 1.0, info


# -- 5. the heal copy on the device --------------------------------------------------------------------
def check_heal_copy(dev: torch.device) -> tuple[bool, str]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 512, device=dev), torch.randint(0, 10, (32,), device=dev)
    step = train_step(model, opt, x, y)
    step()  # Adam's moments exist now
    snap = Snapshot(opt, 1)
    # Adam's step counts live on the CPU (capturable=False) wherever the weights are: not part of the question
    kept = [p.device.type for p in snap.params] + [
        v.device.type for s in snap.state["state"].values() for k, v in s.items()
        if isinstance(v, torch.Tensor) and k != "step"]
    before = [p.detach().clone() for p in model.parameters()]
    step()
    snap.restore(opt)
    restored = all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else None
    ok = snap.device is None and set(kept) == {dev.type} and restored
    return ok, (f"copy device {snap.device} (None: beside the weights), tensors on {sorted(set(kept))}, "
                f"restored exactly {restored}, free {format_bytes(free)}")


# -- 6. overhead -------------------------------------------------------------------------------------
def check_overhead(dev: torch.device) -> tuple[bool, str]:
    try:
        import torchvision
    except ImportError as exc:
        raise Skip(f"torchvision is not installed ({exc})") from None
    batch, side, warmup, steps, rounds = SIZES[dev.type][2:]
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, side, side, device=dev), torch.randint(0, 1000, (batch,), device=dev)
    step = train_step(model, opt, x, y)

    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def timed() -> float:
        for _ in range(warmup):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        return (time.perf_counter() - start) / steps

    times: dict[str, list[float]] = {"plain": [], "watch": []}
    for r in range(rounds):  # interleaved, the order swapped each round: drift hits both alike
        for name in (("plain", "watch") if r % 2 == 0 else ("watch", "plain")):
            with torchdoctor.watch(model, opt, print_report=False) if name == "watch" else contextlib.nullcontext():
                times[name].append(timed())
    ratios = [w / p for w, p in zip(times["watch"], times["plain"], strict=True)]
    ratio = statistics.median(ratios)
    return ratio <= MAX_OVERHEAD, (
        f"ResNet-18 batch {batch} {side}x{side}: median ratio {ratio:.3f} (limit {MAX_OVERHEAD}), rounds "
        f"{[round(v, 3) for v in ratios]}, plain {statistics.median(times['plain']) * 1e3:.1f} ms/step, "
        f"watch {statistics.median(times['watch']) * 1e3:.1f} ms/step")


CHECKS: dict[str, Check] = {"memory_pressure": check_memory_pressure, "out_of_memory": check_out_of_memory,
                            "amp_grad_scaler": check_amp, "host_reads_per_step": check_host_reads,
                            "heal_copy_on_device": check_heal_copy, "overhead_resnet18": check_overhead}


def header(dev: torch.device | None) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    where = "no CUDA device"
    if dev is not None and dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        where = f"{props.name} ({format_bytes(props.total_memory)}), CUDA {torch.version.cuda}"
    elif dev is not None:
        where = "CPU (smoke test of this script: CUDA expectations fail here)"
    return f"gpu_check {date}: {where}, torch {torch.__version__}, python {sys.version.split()[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--only", nargs="*", choices=list(CHECKS), help="run these checks alone")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    dev = torch.device("cuda", 0) if args.device == "cuda" and torch.cuda.is_available() else None
    if args.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
        dev = torch.device("cpu")
    print(header(dev), flush=True)
    counts = Counter()
    for name, check in CHECKS.items():
        if args.only and name not in args.only:
            continue
        elapsed = time.perf_counter() - started
        if dev is None:
            status, info = "SKIP", "torch.cuda.is_available() is False"
        elif elapsed > TIME_BUDGET_S:
            status, info = "SKIP", f"time budget spent ({elapsed:.0f} s > {TIME_BUDGET_S:.0f} s)"
        else:
            began = time.perf_counter()
            try:
                settle(dev)
                ok, info = check(dev)
                status = "PASS" if ok else "FAIL"
            except Skip as exc:
                status, info = "SKIP", str(exc)
            except Exception as exc:  # one broken check must not hide the others
                status, info = "FAIL", f"{type(exc).__name__}: {exc}"
                if dev.type == "cuda":
                    torch.cuda.set_sync_debug_mode(0)
            info += f" [{time.perf_counter() - began:.1f} s]"
        counts[status] += 1
        print(f"{status} {name}: {info}", flush=True)
    total = time.perf_counter() - started
    print(f"gpu_check summary: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"in {total:.1f} s", flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
