"""DDP under torchrun: each rank observes itself, rank 0 gathers every rank's findings and alone reports.

The torchrun tests are real: 2 processes, gloo on CPU, the scripts in tests/scripts/distributed/.
The gathering and the naming of ranks that fail are also tested in-process, without torchrun, and
the rank rules (rules/ranks.py) on hand-made findings and rank outcomes, each with a healthy twin.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SCRIPTS, run_script
from torchdoctor.distributed import RankContext, detect
from torchdoctor.distributed.exchange import RankState
from torchdoctor.distributed.launch import ENV_DIR, ENV_TIMEOUT
from torchdoctor.distributed.merge import merge
from torchdoctor.findings import Finding, Fix, Severity
from torchdoctor.jsonreport import from_dict, jsonable, to_dict, write
from torchdoctor.render import to_text
from torchdoctor.report import Report
from torchdoctor.rules import ranks as rank_rules
from torchdoctor.rules.ranks import RankOutcome

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
    from_dict(report)  # the contract's reader takes it
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
    assert "judged on 8 steps: too few to call it healthy" in result.stderr
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
    path = tmp_path / "run.json"
    write(merged, path)
    data = json.loads(path.read_text())
    assert data["run"]["world_size"] == 2 and data["run"]["failed_ranks"] == []
    nan = next(f for f in data["findings"] if f["code"] == "nonfinite_loss")
    assert (nan["evidence"]["rank"], nan["step"]) == (1, 3)
    assert all("rank" in f["evidence"] for f in data["findings"])
    # what the file holds is what the merged report held: its findings, and how each rank ended
    back = from_dict(data)
    assert [plain(f) for f in back.findings] == [plain(f) for f in merged.findings]
    assert len(back.findings) == len(merged.findings) > 0
    assert data["run"]["ranks"] == jsonable(merged.ranks)
    assert [(e["rank"], e["status"], e["exit_status"]) for e in data["run"]["ranks"]] == \
        [(0, "reported", 0), (1, "reported", 0)]
    assert data["run"]["failed_ranks"] == [e["rank"] for e in merged.ranks if rank_rules.has_failed(
        e["status"], e["exit_status"])]
    assert not (tmp_path / "gather").exists()  # rank 0 cleans up


def plain(f: Finding) -> tuple:
    """A finding as the JSON can hold it (tuples as lists, NaN as "nan")."""
    return (f.code, f.severity, f.title, f.step, f.where, jsonable(f.evidence),
            [jsonable(x.to_dict()) for x in f.fixes])


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
    assert to_dict(merged)["run"]["failed_ranks"] == [1]
    assert "rank 1 died without reporting" in to_text(merged)


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
    monkeypatch.setattr("torchdoctor.distributed.exchange.AFTER_FAILURE_S", 0.3)
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
    assert to_dict(merged)["run"]["failed_ranks"] == []


def test_rank_state_kinds():
    assert RankState(1, "reported", 143).kind == "terminated"
    assert RankState(1, "reported", 1, "RuntimeError: [pair.cc:561] Connection closed by peer").kind == "lost_peer"
    assert RankState(1, "reported", 1, "ValueError: bad").kind == "own"
    assert RankState(1, "died").kind == "own"


# -- the rank rules, on hand-made data -----------------------------------------------------------------
OK = {0: RankOutcome(0, "reported", 0, finished_at=10.0), 1: RankOutcome(1, "reported", 0, finished_at=11.0)}


def explain(findings: list[Finding], ranks: dict[int, RankOutcome], timeout_s: float = 30.0) -> list[Finding]:
    return rank_rules.explain(findings, ranks, len(ranks), timeout_s, ENV_TIMEOUT)


def crash(rank: int, step: int = 4, message: str = "injected failure") -> Finding:
    return Finding("script_error", Severity.CRITICAL, f"The script died at step {step} in the script: RuntimeError: "
                   f"{message}", step=step, evidence={"rank": rank, "exception": "RuntimeError", "message": message},
                   fixes=[Fix("read_traceback", "The traceback above points at the line.")])


def test_all_ranks_exited_zero_is_no_finding():
    assert explain([], OK) == []
    own = [crash(0)]  # rank 0's own findings pass through as they are when no other rank failed
    assert explain(own, OK) == own


def test_rank_that_died_without_reporting():
    [died] = explain([], OK | {1: RankOutcome(1, "died", finished_at=5.0)})
    assert (died.code, died.severity, died.evidence) == (
        "script_error", Severity.CRITICAL, {"rank": 1, "world_size": 2, "rank_status": "died", "kind": "rank_died"})
    assert died.title.startswith("Rank 1 of 2 died without reporting: it was killed (SIGKILL")
    assert [(x.action, x.params) for x in died.fixes] == [("check_killed_rank", {"rank": 1})]
    assert explain([], OK) == []


def test_rank_that_exited_non_zero():
    [exited] = explain([], OK | {1: RankOutcome(1, "reported", 3)})
    assert exited.title == "Rank 1 of 2 failed: it exited with status 3"
    assert (exited.evidence["kind"], exited.evidence["exit_status"]) == ("rank_exit", 3)
    assert [(x.action, x.params) for x in exited.fixes] == [("check_rank_exit", {"rank": 1, "exit_status": 3})]
    [raised] = explain([], OK | {1: RankOutcome(1, "reported", 1, "ValueError: bad")})
    assert raised.title == "Rank 1 of 2 failed: ValueError: bad (exit status 1)"
    assert raised.fixes[0].action == "fix_rank_error"
    # a rank whose own report explains its failure gets no second finding
    assert explain([], OK | {1: RankOutcome(1, "reported", 1, "ValueError: bad", codes=("script_error",))}) == []
    assert explain([], OK | {1: RankOutcome(1, "reported", 0, codes=("nonfinite_loss",))}) == []


def test_rank_that_stayed_silent():
    [silent] = explain([], OK | {1: RankOutcome(1, "silent", waited_s=30.04)}, timeout_s=90)
    assert silent.title == "Rank 1 of 2 did not report within 30 s (it was still running, or it hung)"
    assert (silent.evidence["kind"], silent.evidence["waited_s"]) == ("rank_silent", 30.0)
    assert (silent.fixes[0].action, silent.fixes[0].params) == ("raise_gather_timeout", {"rank": 1, "timeout_s": 180})
    assert f"{ENV_TIMEOUT}=180" in silent.fixes[0].text
    [never] = explain([], OK | {1: RankOutcome(1, "silent", waited_s=0.3, started=False)})
    assert never.title == "Rank 1 of 2 did not report within 0.3 s (it never started under torchdoctor, or it hung)"
    assert never.fixes[0].params["timeout_s"] == 120
    assert explain([], OK | {1: RankOutcome(1, "not_gathered")}) == []  # on another node: listed, not failed


def test_lost_peer_points_at_the_rank_that_failed_first():
    lost = "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:1"
    ranks = {0: RankOutcome(0, "reported", 1, lost, finished_at=20.0),
             1: RankOutcome(1, "reported", 1, "RuntimeError: injected failure", finished_at=10.0,
                            codes=("script_error",))}
    assert [ranks[r].kind for r in (0, 1)] == ["lost_peer", "own"]
    assert rank_rules.causes(ranks) == [1]
    first, second = explain([crash(0, message="Connection closed by peer"), crash(1)], ranks)
    assert first.evidence["rank"] == 1 and "from_rank" not in first.evidence  # the cause first
    assert first.title == "Rank 1 of 2: The script died at step 4 in the script: RuntimeError: injected failure"
    assert second.title == ("Rank 0 died at step 4 in a collective because rank 1 had failed: "
                            "RuntimeError: Connection closed by peer [127.0.0.1]:1")
    assert second.evidence["from_rank"] == 1
    assert [x.action for x in second.fixes] == ["fix_other_rank", "read_traceback"]
    assert second.fixes[0].params == {"rank": 1}
    healthy = [crash(0), crash(1)]
    assert explain(healthy, OK) == healthy


def test_terminated_rank_is_not_blamed_unless_no_rank_failed_on_its_own():
    ranks = {0: RankOutcome(0, "reported", 0), 1: RankOutcome(1, "reported", 1, "ValueError: bad", finished_at=1.0),
             2: RankOutcome(2, "reported", 143, finished_at=2.0)}
    assert ranks[2].kind == "terminated"
    assert [f.evidence["rank"] for f in rank_rules.explain([], ranks, 3, 30, ENV_TIMEOUT)] == [1]
    only = rank_rules.explain([], {0: ranks[0], 2: ranks[2]}, 3, 30, ENV_TIMEOUT)
    assert [(f.evidence["rank"], f.title) for f in only] == [(2, "Rank 2 of 3 failed: it exited with status 143")]


def test_nan_loss_on_one_rank_spreads_through_the_all_reduce():
    loss = Finding("nonfinite_loss", Severity.CRITICAL, "Loss became NaN at step 3", step=3,
                   evidence={"rank": 1, "origin": "input"})
    grads = Finding("nonfinite_gradient", Severity.CRITICAL, "Gradients went NaN/Inf at step 3", step=3,
                    evidence={"rank": 0}, fixes=[Fix("add_epsilon", "Add an epsilon."), Fix("clip", "Clip.")])
    first, spread = explain([grads, loss], OK)
    assert first is loss
    assert spread.title.startswith("Gradients went NaN/Inf at step 3 on rank 0 while its loss was finite: the loss "
                                   "of rank 1 was non-finite at that step")
    assert spread.evidence == {"rank": 0, "from_rank": 1}
    assert [(x.action, x.params) for x in spread.fixes] == [("fix_other_rank", {"rank": 1, "step": 3}), ("clip", {})]
    same_rank = dataclasses.replace(grads, evidence={"rank": 1})
    assert explain([same_rank, loss], OK) == [same_rank, loss]  # its own loss: nothing spread
    other_step = dataclasses.replace(grads, step=4)
    assert explain([loss, other_step], OK) == [loss, other_step]


def test_order_is_worst_first_cause_first_by_step_then_rank():
    def f(severity: Severity, step: int | None, rank: int, caused: bool = False) -> Finding:
        return Finding("x", severity, "t", step=step, evidence={"rank": rank} | ({"from_rank": 9} if caused else {}))

    found = [f(Severity.WARNING, 1, 0), f(Severity.CRITICAL, 2, 0, caused=True), f(Severity.CRITICAL, None, 1),
             f(Severity.CRITICAL, 5, 1), f(Severity.CRITICAL, 5, 0)]
    assert sorted(found, key=rank_rules.order) == [found[4], found[3], found[2], found[1], found[0]]
