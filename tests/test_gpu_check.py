"""benchmarks/gpu_check.py runs anywhere: without CUDA every check says SKIP and it exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("memory_pressure", "out_of_memory", "amp_grad_scaler", "host_reads_per_step", "heal_copy_on_device",
          "overhead_resnet18")


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the checks run for real (minutes)")
def test_without_cuda_every_check_is_skipped_and_it_exits_0():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gpu_check ") and f"torch {torch.__version__}" in lines[0]
    for name in CHECKS:
        assert any(line.startswith(f"SKIP {name}: ") for line in lines), (name, done.stdout)
    assert not any(line.startswith(("PASS", "FAIL")) for line in lines), done.stdout
    assert lines[-1].startswith(f"gpu_check summary: 0 passed, 0 failed, {len(CHECKS)} skipped"), done.stdout


def test_the_script_lists_exactly_these_checks():
    """A check added to the script is added here too (and so to the SKIP assertion above)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.gpu_check import CHECKS as SCRIPT_CHECKS
    finally:
        sys.path.remove(str(ROOT))
    assert tuple(SCRIPT_CHECKS) == CHECKS
