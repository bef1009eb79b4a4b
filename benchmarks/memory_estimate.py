"""How close torchdoctor's memory numbers are to what PyTorch's profiler measures, on CPU.

    python benchmarks/memory_estimate.py

1. Activations: what torchdoctor counts as saved for backward in a training forward, against
   the profiler's net CPU allocation over the same forward (what is still allocated when it
   returns), less the model's output where nothing saved it.
2. Checkpointing advice: the step peak torchdoctor predicts once its suggested blocks are
   checkpointed, against the profiler's peak over a real step with them checkpointed.

The profiler sees only PyTorch's CPU allocator; the input is made before profiling starts, and
parameters and buffers exist before it, so neither side counts them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from torchdoctor.probes.memory import ActivationCapture, storage_key

ROOT = Path(__file__).resolve().parent.parent


def estimated_and_profiled(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(torchdoctor's saved-activation bytes, the profiler's) for one training forward."""
    model.train()
    pre = {k[0] for t in [*model.parameters(), *model.buffers(), x] if (k := storage_key(t)) is not None}
    names = {id(m): n for n, m in model.named_modules()}
    capture = ActivationCapture(pre, names, "model")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        capture.start(x)
        try:
            out = model(x)  # referenced until the profiler stops: its graph keeps what was saved
        finally:
            capture.stop()
    net = sum(e.self_cpu_memory_usage for e in prof.events())
    estimate = sum(capture.saved.values())
    outputs = [out] if isinstance(out, torch.Tensor) else list(out)
    unsaved = {k for t in outputs if (k := storage_key(t)) is not None and k[0] not in capture.index}
    return estimate, net - sum(size for _, size in unsaved)


def profiled_peak(step: Callable[[], Any]) -> int:
    """The most CPU memory allocated at once during `step()`, above what was allocated before it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


class CustomForward(nn.Module):
    """Functional ops in a custom forward count for the model itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


def models() -> list[tuple[str, nn.Module, torch.Tensor]]:
    import torchvision

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3072, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))
    return [
        ("CNN with BatchNorm, inplace ReLU", cnn, torch.randn(16, 3, 64, 64)),
        ("torchvision resnet18", torchvision.models.resnet18(num_classes=10), torch.randn(8, 3, 64, 64)),
        ("MLP with Dropout", mlp, torch.randn(64, 3, 32, 32)),
        ("custom forward (F.relu, flatten)", CustomForward(), torch.randn(32, 3, 32, 32)),
    ]


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpointed_step_peak(blocks: list[str], batch_size: int = 64) -> int:
    """The profiled peak of a training step of examples/memory_budget.py with `blocks` checkpointed."""
    example = load_example("memory_budget")
    torch.manual_seed(0)
    model = example.Net()
    example.apply_checkpointing(model, blocks)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch_size, 3, 64, 64), torch.randint(0, 10, (batch_size,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # the optimizer's state exists from here on, as in a running loop
    return profiled_peak(step)


def main() -> None:
    torch.set_num_threads(1)
    print("saved activations of one training forward: torchdoctor vs torch.profiler (CPU)")
    for name, model, x in models():
        estimate, measured = estimated_and_profiled(model, x)
        print(f"  {name:36s} {estimate / 2**20:9.2f} MiB  {measured / 2**20:9.2f} MiB  "
              f"error {(estimate - measured) / measured:+.2%}")

    from tests.conftest import run_script  # the same in-process run the tests use
    from torchdoctor.config import Config

    script = ROOT / "examples" / "memory_budget.py"
    run = run_script(script, "--steps", "2", config=Config(memory_budget=96 * 2**20))
    finding = run.report.by_code("memory_pressure")
    fix = next(f for f in finding.fixes if f.action == "gradient_checkpointing")
    plain = checkpointed_step_peak([])
    after = checkpointed_step_peak(fix.params["modules"])
    predicted = fix.params["estimated_peak_bytes"]
    print("\ncheckpointing advice on examples/memory_budget.py (batch 64):")
    print(f"  step peak, plain:        predicted {run.report.timeline.memory.profile.step_total / 2**20:7.1f} MiB"
          f"  profiled {plain / 2**20:7.1f} MiB")
    print(f"  checkpoint {', '.join(fix.params['modules'])}: predicted {predicted / 2**20:7.1f} MiB"
          f"  profiled {after / 2**20:7.1f} MiB  error {(predicted - after) / after:+.1%}")


if __name__ == "__main__":
    main()
