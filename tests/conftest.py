"""Shared helpers: run a real script in-process under torchdoctor and get its report."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from torchdoctor.config import Config
from torchdoctor.report import Report
from torchdoctor.session import Doctor

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = Path(__file__).resolve().parent / "scripts"

torch.set_num_threads(1)


@dataclass
class ScriptRun:
    report: Report
    status: int

    @property
    def codes(self) -> list[str]:
        return self.report.codes()


def run_script(path: str | os.PathLike[str], *args: str, config: Config | None = None,
               module: bool = False) -> ScriptRun:
    """What `torchdoctor run PATH ARGS` does, in this process (no new torch import)."""
    result = Doctor(config=config, print_report=False).run(str(path), args, module=module)
    return ScriptRun(result.report, result.script_status)


@pytest.fixture
def run():
    return run_script


@pytest.fixture
def write_script(tmp_path):
    """Write a script into a temporary folder and return its path."""

    def write(source: str, name: str = "train.py") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        return path

    return write


def cli(*args: str, cwd: str | os.PathLike[str] | None = None, timeout: int = 120):
    """Run the real `torchdoctor` command in a subprocess (for exit status and stream checks)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "torchdoctor", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
