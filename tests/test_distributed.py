"""DDP under torchrun: each rank observes itself, rank 0 gathers every rank's findings and alone reports.

The torchrun tests are real: 2 processes, gloo on CPU, the scripts in tests/scripts/distributed/.
The gathering and the naming of ranks that fail are also tested in-process, without torchrun.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCRIPTS, run_script
from torchdoctor.distributed import ENV_DIR, ENV_TIMEOUT, RankContext, RankState, detect, merge
from torchdoctor.report import Report

DDP = SCRIPTS / "distributed"
HEADER = re.compile(r"^torchdoctor \S+\.py · ", re.MULTILINE)  # the first line of a printed report
TORCHRUN_ENV = {"TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511",
                "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0", "TORCHELASTIC_RESTART_COUNT": "0"}


def torchrun(script: Path, json_path: Path, module: bool = False) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc_per_node 2 --standalone --no-python torchdoctor run --json OUT script`
    (`-m torchdoctor` with module=True), rendezvous on a free port."""
    console_script = Path(sys.executable).parent / "torchdoctor"
    if module or not console_script.exists():
        entry = ["-m", "torchdoctor"]
    else:
        entry = ["--no-python", str(console_script)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHDOCTOR_", "TORCHELASTIC_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **{ENV_TIMEOUT: "30"})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *entry,
               "run", "--json", str(json_path), str(script)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)


def only_rank0_reported(result: subprocess.CompletedProcess[str], json_path: Path) -> dict:
    assert len(HEADER.findall(result.stderr)) == 1, result.stderr  # one report, rank 0's
    assert "torchdoctor" not in result.stdout
    report = json.loads(json_path.read_text())
    Report.from_dict(report)  # the contract's reader takes it
    assert report["run"]["world_size"] == 2
    assert [r["rank"] for r in report["run"]["ranks"]] == [0, 1]
    for finding in report["findings"]:
        assert isinstance(finding["evidence"]["rank"], int), finding
    return report


# -- real runs under torchrun ---------------------------------------------------------------------
def test_healthy_ddp_run_is_reported_once_by_rank0(tmp_path):
    out = tmp_path / "run.json"
    result = torchrun(DDP / "healthy.py", out)
    assert result.returncode == 0, result.stderr
    report = only_rank0_reported(result, out)
    assert [f for f in report["findings"] if f["severity"] != "info"] == []
    assert report["run"]["failed_ranks"] == []
    assert [(r["status"], r["exit_status"], r["steps"]) for r in report["run"]["ranks"]] == [("reported", 0, 8)] * 2
    assert "healthy: 8 steps" in result.stderr
    assert "2 ranks: ranks 0-1 exit 0" in result.stderr
    assert result.stdout.count("trained 8 steps on 2 ranks") == 1  # the script's own output is untouched


def test_nan_in_rank1_batch_is_reported_by_rank0_with_its_rank(tmp_path):
    out = tmp_path / "run.json"
    result = torchrun(DDP / "nan_on_rank1.py", out)
    assert result.returncode == 0, result.stderr
    report = only_rank0_reported(result, out)
    first = report["findings"][0]
    assert (first["code"], first["step"], first["evidence"]["rank"], first["evidence"]["origin"]) == \
        ("nonfinite_loss", 3, 1, "input")
    # rank 0's loss was finite at step 3, but the all-reduce brought it rank 1's NaN gradients
    spread = next(f for f in report["findings"] if f["code"] == "nonfinite_gradient")
    assert spread["evidence"]["rank"] == 0 and spread["evidence"]["from_rank"] == 1
    assert spread["fixes"][0]["action"] == "fix_other_rank"
    assert re.search(r"CRITICAL +nonfinite_loss · step 3\n.*\n  evidence: rank: 1;", result.stderr), result.stderr


def test_rank_that_raises_is_named_by_rank0(tmp_path):
    out = tmp_path / "run.json"
    result = torchrun(DDP / "raises_on_rank1.py", out, module=True)  # torchrun ... -m torchdoctor run
    assert result.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in result.stderr  # rank 1's own traceback
    report = only_rank0_reported(result, out)
    assert 1 in report["run"]["failed_ranks"]
    rank1 = report["run"]["ranks"][1]
    assert (rank1["status"], rank1["exit_status"], rank1["exception"]) == \
        ("reported", 1, "RuntimeError: injected failure on rank 1")
    failed = report["findings"][0]  # the cause first
    assert failed["code"] == "script_error" and failed["evidence"]["rank"] == 1 and failed["step"] == 4
    assert "injected failure on rank 1" in failed["evidence"]["message"]
    assert failed["title"].startswith("Rank 1 of 2: ")
    lost = [f for f in report["findings"] if f["code"] == "script_error" and f["evidence"]["rank"] == 0]
    assert all(f["evidence"]["from_rank"] == 1 for f in lost)  # rank 0 only lost its peer
    assert "Rank 1 of 2: The script died at step 4" in result.stderr


# -- gathering, in-process ---------------------------------------------------------------------------------
def context(tmp_path: Path, timeout: float = 30.0) -> RankContext:
    return RankContext(rank=0, world_size=2, local_rank=0, folder=tmp_path / "gather", timeout_s=timeout,
                       reachable=[0, 1])


def rank1(tmp_path: Path, report: Report, status: int = 0, exception: BaseException | None = None) -> None:
    RankContext(rank=1, world_size=2, local_rank=1, folder=tmp_path / "gather", reachable=[0, 1]).publish(
        report, status, exception)


NAN_AT_3 = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for step in range(6):
    x = torch.randn(8, 4)
    if step == 3 and POISON:
        x[0, 0] = float("nan")
    opt.zero_grad(); model(x).pow(2).mean().backward(); opt.step()
"""


@pytest.fixture
def reports(write_script):
    clean = run_script(write_script(NAN_AT_3.replace("POISON", "False"), "clean.py")).report
    poisoned = run_script(write_script(NAN_AT_3.replace("POISON", "True"), "poisoned.py")).report
    return clean, poisoned


def test_merge_tags_every_finding_and_round_trips(tmp_path, reports):
    clean, poisoned = reports
    ctx = context(tmp_path)
    rank1(tmp_path, poisoned)
    merged = merge(clean, ctx, ctx.gather(), 0, None)
    data = json.loads(json.dumps(merged.to_dict(), allow_nan=False))
    assert data["run"]["world_size"] == 2 and data["run"]["failed_ranks"] == []
    nan = next(f for f in data["findings"] if f["code"] == "nonfinite_loss")
    assert (nan["evidence"]["rank"], nan["step"]) == (1, 3)
    assert all("rank" in f["evidence"] for f in data["findings"])
    assert Report.from_dict(data).to_dict() == data
    assert not (tmp_path / "gather").exists()  # rank 0 cleans up


def test_same_finding_on_both_ranks_is_kept_once(tmp_path, reports):
    _, poisoned = reports
    ctx = context(tmp_path)
    rank1(tmp_path, poisoned)
    merged = merge(poisoned, ctx, ctx.gather(), 0, None)
    assert merged.codes().count("nonfinite_loss") == 1
    assert merged.by_code("nonfinite_loss").evidence["ranks"] == [0, 1]
    assert merged.by_code("nonfinite_loss").evidence["rank"] == 0


def test_rank_killed_without_reporting_is_named_at_once(tmp_path, reports):
    clean, _ = reports
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "gather"
    folder.mkdir()
    (folder / "rank-1.start.json").write_text(json.dumps(
        {"rank": 1, "pid": gone.pid, "host": os.uname().nodename, "create_time": None, "started_at": time.time()}))
    ctx = context(tmp_path, timeout=30)
    start = time.monotonic()
    states = ctx.gather()
    assert time.monotonic() - start < 5  # not the 30 s timeout: its process is gone
    assert states[1].status == "died"
    merged = merge(clean, ctx, states, 0, None)
    failed = merged.by_code("script_error")
    assert failed.evidence["rank"] == 1 and failed.evidence["kind"] == "rank_died"
    assert merged.to_dict()["run"]["failed_ranks"] == [1]
    assert "rank 1 died without reporting" in merged.to_text()


def test_rank_that_never_reports_is_named_after_the_timeout(tmp_path, reports):
    clean, _ = reports
    ctx = context(tmp_path, timeout=0.3)
    merged = merge(clean, ctx, ctx.gather(), 0, None)
    failed = merged.by_code("script_error")
    assert failed.evidence["kind"] == "rank_silent" and failed.fixes[0].action == "raise_gather_timeout"


def test_a_failed_rank_shortens_the_wait_and_a_stale_report_is_ignored(tmp_path, reports, monkeypatch):
    clean, poisoned = reports
    ctx = RankContext(rank=0, world_size=3, local_rank=0, folder=tmp_path / "gather", timeout_s=30,
                      reachable=[0, 1, 2])
    monkeypatch.setattr("torchdoctor.distributed.AFTER_FAILURE_S", 0.3)
    rank1(tmp_path, poisoned, 1, RuntimeError("boom"))
    stale = json.loads((tmp_path / "gather" / "rank-1.json").read_text()) | {"rank": 2, "started_at": 0}
    (tmp_path / "gather" / "rank-2.json").write_text(json.dumps(stale))  # left by an earlier run
    start = time.monotonic()
    states = ctx.gather()
    assert time.monotonic() - start < 5
    assert (states[1].status, states[1].exit_status, states[1].exception) == ("reported", 1, "RuntimeError: boom")
    assert states[2].status == "silent"
    merged = merge(clean, ctx, states, 0, None)
    failed = {f.evidence["rank"]: f for f in merged.findings if f.code == "script_error"}
    assert sorted(failed) == [1, 2]
    assert failed[1].title.startswith("Rank 1 of 3 failed: RuntimeError: boom")
    assert failed[2].evidence["kind"] == "rank_silent"


def test_detect_reads_torchrun_environment(tmp_path):
    assert detect({}) is None
    assert detect({"RANK": "0", "WORLD_SIZE": "2"}) is None  # no launcher around it
    env = {**TORCHRUN_ENV, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
           "TORCHELASTIC_ERROR_FILE": "/tmp/torchelastic_a/none_b/attempt_0/1/error.json"}
    ctx = detect(env)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.reachable) == (1, 2, 1, False, [0, 1])
    rank0 = detect(env | {"RANK": "0", "LOCAL_RANK": "0",
                          "TORCHELASTIC_ERROR_FILE": "/tmp/torchelastic_a/none_b/attempt_0/0/error.json"})
    assert rank0.folder == ctx.folder  # the ranks of one launch meet in one folder
    again = detect(env | {"TORCHELASTIC_ERROR_FILE": "/tmp/torchelastic_c/none_d/attempt_0/1/error.json"})
    assert again.folder != ctx.folder  # another launch, another folder
    two_nodes = detect(env | {"WORLD_SIZE": "4", ENV_TIMEOUT: "5"})
    assert two_nodes.reachable == [0, 1] and two_nodes.timeout_s == 5
    shared = detect(env | {"WORLD_SIZE": "4", ENV_DIR: str(tmp_path)})
    assert shared.reachable == [0, 1, 2, 3] and shared.folder.parent == tmp_path


def test_ranks_on_other_nodes_are_listed_not_failed(tmp_path, reports):
    clean, _ = reports
    ctx = RankContext(rank=0, world_size=4, local_rank=0, folder=tmp_path / "gather", reachable=[0, 1])
    rank1(tmp_path, clean)
    states = ctx.gather()
    assert [states[r].status for r in (1, 2, 3)] == ["reported", "not_gathered", "not_gathered"]
    merged = merge(clean, ctx, states, 0, None)
    assert merged.by_code("script_error") is None
    assert merged.to_dict()["run"]["failed_ranks"] == []


def test_rank_state_kinds():
    assert RankState(1, "reported", 143).kind == "terminated"
    assert RankState(1, "reported", 1, "RuntimeError: [pair.cc:561] Connection closed by peer").kind == "lost_peer"
    assert RankState(1, "reported", 1, "ValueError: bad").kind == "own"
    assert RankState(1, "died").kind == "own"
