"""ddp_out_of_sync: DDP ranks that train different models, under a real torchrun (2 CPU ranks, gloo).

The raw module called instead of the DDP wrapper is found by each rank from its own forwards;
parameters that differ across ranks are found by rank 0 comparing the ranks' fingerprints at the
merge. Each has its healthy twin (the wrapper called; the existing healthy DDP script), and the
cross-rank comparison is also tested on hand-made fingerprints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SCRIPTS
from torchdoctor.distributed.launch import ENV_TIMEOUT
from torchdoctor.rules.ddp_out_of_sync import compare

DDP = SCRIPTS / "distributed"
CODE = "ddp_out_of_sync"


def torchrun(script: Path, json_path: Path, *args: str, options: tuple[str, ...] = ()) -> dict:
    """`torchrun --nproc_per_node 2 --standalone -m torchdoctor run --json OUT script ARGS`; the report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHDOCTOR_", "TORCHELASTIC_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **{ENV_TIMEOUT: "30"})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "torchdoctor", "run", *options, "--json", str(json_path), str(script), *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(json_path.read_text())
    assert report["run"]["world_size"] == 2 and report["run"]["failed_ranks"] == [], result.stderr
    return report


def codes(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def test_raw_module_called_is_found_once_with_its_ranks(tmp_path):
    report = torchrun(DDP / "raw_module.py", tmp_path / "run.json", "--steps", "4")
    found = [f for f in report["findings"] if f["code"] == CODE]
    assert len(found) == 1, report["findings"]  # once, not once per rank, nor again for the differing parameters
    f = found[0]
    assert f["severity"] == "error" and f["step"] == 0
    assert f["evidence"]["ranks"] == [0, 1] and f["evidence"]["kind"] == "raw_module"
    assert f["evidence"]["unsynced_steps"] == 4
    assert "0.weight" in f["evidence"]["parameters"]
    assert f["fixes"][0]["action"] == "call_ddp_wrapper"
    assert f["fixes"][0]["location"]["after"].strip() == "output = model(x)"
    line = (DDP / "raw_module.py").read_text().splitlines().index("        output = model.module(x)") + 1
    assert f["fixes"][0]["location"]["line"] == line and f["where"] == "Sequential"


def test_ddp_wrapper_called_is_silent(tmp_path):
    report = torchrun(DDP / "raw_module.py", tmp_path / "run.json", "--fixed", "--steps", "4")
    assert CODE not in codes(report)
    assert [r["steps"] for r in report["run"]["ranks"]] == [4, 4]


def test_parameters_changed_on_one_rank_are_found_by_rank0(tmp_path):
    report = torchrun(DDP / "raw_module.py", tmp_path / "run.json", "--fixed", "--drift", "--steps", "4")
    found = [f for f in report["findings"] if f["code"] == CODE]
    assert len(found) == 1, report["findings"]
    f = found[0]
    assert f["step"] == 3 and f["evidence"]["kind"] == "parameters_differ"  # fingerprints after steps 0, 1, 3
    assert f["evidence"]["ranks"] == [0, 1] and "module.0.weight" in f["evidence"]["parameters"]


def test_disabling_the_rule_silences_its_cross_rank_half_too(tmp_path):
    report = torchrun(DDP / "raw_module.py", tmp_path / "run.json", "--fixed", "--drift", "--steps", "4",
                      options=("--disable", CODE))
    assert CODE not in codes(report)


def test_healthy_ddp_script_is_silent(tmp_path):
    report = torchrun(DDP / "healthy.py", tmp_path / "run.json")
    assert CODE not in codes(report)


# -- the comparison across ranks, on hand-made fingerprints ---------------------------------------------------
NAMES = ["0.weight", "0.bias", "2.weight"]


def prints(*rows: tuple[int, list[float]]) -> list[dict]:
    return [{"step": step, "names": NAMES, "values": values} for step, values in rows]


def test_parameters_that_differ_at_the_same_step_are_flagged():
    rank0 = prints((0, [1.0, 0.5, -2.0]), (1, [1.1, 0.5, -2.1]), (3, [1.2, 0.6, -2.2]))
    rank1 = prints((0, [1.0, 0.5, -2.0]), (1, [1.1, 0.5, -2.1]), (3, [1.2, 0.9, -2.2]))
    f = compare({0: rank0, 1: rank1}, 2)
    assert f is not None and f.code == CODE and f.step == 3
    assert f.evidence["ranks"] == [0, 1] and f.evidence["parameters"] == ["0.bias"]
    assert f.evidence["max_relative_difference"] > 0.3


def test_float_noise_and_unmatched_steps_are_not_flagged():
    rank0 = prints((0, [1.0, 0.5, -2.0]), (1, [1.1, 0.5, -2.1]))
    rank1 = prints((0, [1.0 + 1e-7, 0.5, -2.0]), (3, [9.0, 9.0, 9.0]))  # step 3: rank 0 has none to compare
    assert compare({0: rank0, 1: rank1}, 2) is None
    assert compare({0: rank0}, 1) is None
