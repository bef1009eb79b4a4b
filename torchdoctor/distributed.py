"""Multi-process runs (DDP under torchrun): every rank watches its own process, rank 0 reports for all.

`torchrun --nproc_per_node N --no-python torchdoctor run train.py` starts N copies of torchdoctor,
each with RANK, WORLD_SIZE, LOCAL_RANK... in its environment. Each rank observes its own process as
in a single-process run; at the end the ranks other than 0 write their report (with their exit
status and exception) to a folder they share with rank 0, and print nothing. Rank 0 waits for
them, merges the findings of every rank (each finding's `evidence.rank` says which rank saw it),
and prints and writes the one report.

The gathering goes through files, not the process group: the script may have destroyed its group
before torchdoctor reports, and a rank whose peer died cannot use it. Files also tell a rank that
died apart from one that is slow: each rank leaves a marker with its pid when it starts, so a
rank that was killed without reporting (SIGKILL, the out-of-memory killer, a segfault) is named as
soon as its process is gone, not only after the timeout.

Rank 0 waits `TORCHDOCTOR_GATHER_TIMEOUT` seconds (default 60) for the others; once a rank has
failed (or rank 0 itself failed, or torchrun sent it SIGTERM to stop the group) it waits at most
`AFTER_FAILURE_S` more, well inside the 30 s torchrun gives a terminated worker before it kills it.
The folder is `TORCHDOCTOR_GATHER_DIR` when set (a folder every node sees gathers the ranks of all
nodes), else the temporary folder of this machine: then only the ranks on rank 0's node are
gathered, and the others are listed as not gathered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import Finding, Fix, Severity
from .report import Report, _jsonable

ENV_TIMEOUT = "TORCHDOCTOR_GATHER_TIMEOUT"
ENV_DIR = "TORCHDOCTOR_GATHER_DIR"
DEFAULT_TIMEOUT_S = 60.0
AFTER_FAILURE_S = 10.0  # torchrun kills a worker 30 s after its SIGTERM; rank 0 must have reported by then
AFTER_SIGTERM_S = 15.0  # still well inside the 30 s torchrun gives a SIGTERMed worker
POLL_S = 0.1
STALE_S = 120.0  # a rank file from a process started this long before rank 0 is a leftover of another run
TERMINATED = (128 + signal.SIGTERM, 128 + signal.SIGINT)  # stopped from outside: torchrun, Ctrl-C
# What a collective raises on a rank whose peer died or hung (gloo, NCCL, the store)
LOST_PEER = re.compile(r"closed by peer|reset by peer|remote worker|broken pipe|connection refused|"
                       r"communicator was aborted|NCCL error|watchdog caught|timed out|timeout", re.IGNORECASE)
SILENT = {"memory_report": False, "gradient_report": False, "html_path": None, "live": False}
FILE_VERSION = 1


def detect(environ: Mapping[str, str] | None = None) -> RankContext | None:
    """The rank of this process when a launcher such as torchrun started it, else None.

    From the environment torchrun sets, not from torch.distributed: the script has not created
    its process group yet when torchdoctor starts, and may have destroyed it when it reports.
    """
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    if not (0 <= rank < world) or not (env.get("TORCHELASTIC_RUN_ID") or (env.get("MASTER_ADDR")
                                                                         and env.get("MASTER_PORT"))):
        return None
    local_rank = _int(env.get("LOCAL_RANK"), rank)
    local_world = _int(env.get("LOCAL_WORLD_SIZE"), world)
    shared = env.get(ENV_DIR)
    launch = [env.get("TORCHELASTIC_RUN_ID", ""), env.get("MASTER_ADDR", ""), env.get("MASTER_PORT", ""),
              env.get("TORCHELASTIC_RESTART_COUNT", "0")]
    error_file = env.get("TORCHELASTIC_ERROR_FILE")
    if error_file and not shared:
        # <log dir>/<run id>_xxxx/attempt_<n>/<local rank>/error.json: the attempt folder is made
        # afresh by torchrun for each launch and shared by the ranks of this node.
        launch.append(str(Path(error_file).parent.parent))
    key = hashlib.sha1("\0".join(launch).encode()).hexdigest()[:16]
    if shared:
        folder = Path(shared) / f"torchdoctor-{key}"
    else:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        folder = Path(tempfile.gettempdir()) / f"torchdoctor-{uid}-{key}"
    timeout = _float(env.get(ENV_TIMEOUT), DEFAULT_TIMEOUT_S)
    # Without a shared folder only this node's ranks can be gathered; torchrun numbers the ranks
    # node by node, so rank 0's node holds ranks 0..LOCAL_WORLD_SIZE-1.
    reachable = range(world) if shared or local_world >= world else range(local_world)
    return RankContext(rank=rank, world_size=world, local_rank=local_rank, folder=folder, timeout_s=timeout,
                       reachable=list(reachable), on_main_node=_int(env.get("GROUP_RANK"), 0) == 0)


@dataclass
class RankContext:
    rank: int
    world_size: int
    local_rank: int
    folder: Path
    timeout_s: float = DEFAULT_TIMEOUT_S
    reachable: list[int] = field(default_factory=list)
    on_main_node: bool = True
    started_at: float = field(default_factory=time.time)
    _terminated: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def publishes(self) -> bool:
        return self.rank in self.reachable or self.on_main_node

    # -- the run ----------------------------------------------------------------
    def begin(self, run: Any) -> None:
        """Before the script: record the world size, leave this rank's marker, and keep a SIGTERM
        that comes after the script from killing the report. torchrun sends every rank SIGTERM once
        one rank has failed; while the script runs it still ends the script (`terminated_as_exit`),
        after it the rank finishes its report and exits with the script's status. The handler
        stays until the process exits (it exits right after the report)."""
        run.world_size = self.world_size
        _set_sigterm(self._on_sigterm)
        if self.rank == 0 or not self.publishes:
            return
        with contextlib.suppress(OSError):
            _write_json(self.folder / f"rank-{self.rank}.start.json",
                        {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(),
                         "create_time": _create_time(os.getpid()), "started_at": self.started_at})

    def finish(self, report: Report, exit_status: int, exception: BaseException | None) -> Report:
        """After Doctor.stop: a rank other than 0 leaves its report for rank 0 (and returns its own);
        rank 0 waits for theirs and returns the merged report."""
        if not self.is_main:
            if self.publishes:
                with contextlib.suppress(Exception):  # a rank other than 0 prints nothing of torchdoctor's
                    self.publish(report, exit_status, exception)
            return report
        try:
            ranks = self.gather(failed=exit_status not in (0, None))
            return merge(report, self, ranks, exit_status, exception)
        except Exception as exc:  # the run's own report still comes out
            report.internal_errors.append(f"gathering the ranks' reports: {type(exc).__name__}: {exc}")
            report.timeline.run.world_size = self.world_size
            return report

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._terminated = True

    # -- files ------------------------------------------------------------------------
    def publish(self, report: Report, exit_status: int, exception: BaseException | None) -> None:
        _write_json(self.folder / f"rank-{self.rank}.json", {
            "torchdoctor_rank_report": FILE_VERSION,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "world_size": self.world_size,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "finished_at": time.time(),
            "exit_status": exit_status,
            "exception": _describe(exception),
            "terminated": self._terminated,
            "report": report.to_dict(),
        })

    def gather(self, failed: bool = False) -> dict[int, RankState]:
        """Wait for the other reachable ranks' reports; name the ones that did not come."""
        others = [r for r in self.reachable if r != 0]
        states: dict[int, RankState] = {}
        start = time.monotonic()
        deadline = start + self.timeout_s
        if failed:
            deadline = min(deadline, start + AFTER_FAILURE_S)
        terminated_seen = False
        while True:
            for r in others:
                if r in states:
                    continue
                data = _read_json(self.folder / f"rank-{r}.json")
                if data is not None and data.get("started_at", 0) >= self.started_at - STALE_S:
                    states[r] = RankState(r, "reported", data.get("exit_status"), data.get("exception"),
                                          data.get("finished_at"), data.get("report"), data.get("host"))
                    if states[r].exit_status not in (0, None):
                        deadline = min(deadline, time.monotonic() + AFTER_FAILURE_S)
                    continue
                marker = _read_json(self.folder / f"rank-{r}.start.json")
                if marker is not None and marker.get("started_at", 0) >= self.started_at - STALE_S \
                        and marker.get("host") == socket.gethostname() \
                        and not _alive(marker.get("pid"), marker.get("create_time")):
                    # gone without a report: the report is written (atomically) before the process
                    # ends, so look once more, then it died without reporting
                    data = _read_json(self.folder / f"rank-{r}.json")
                    if data is None:
                        states[r] = RankState(r, "died", finished_at=time.time())
                        deadline = min(deadline, time.monotonic() + AFTER_FAILURE_S)
            if all(r in states for r in others):
                break
            if self._terminated and not terminated_seen:
                terminated_seen = True
                deadline = min(deadline, time.monotonic() + AFTER_SIGTERM_S)
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        waited = time.monotonic() - start
        for r in others:
            if r not in states:
                started = _read_json(self.folder / f"rank-{r}.start.json") is not None
                states[r] = RankState(r, "silent", waited_s=waited, started=started)
        for r in range(self.world_size):
            if r != 0 and r not in self.reachable:
                states[r] = RankState(r, "not_gathered")
        self._clean(others)
        return states

    def _clean(self, ranks: list[int]) -> None:
        for r in ranks:
            for name in (f"rank-{r}.json", f"rank-{r}.start.json"):
                with contextlib.suppress(OSError):
                    (self.folder / name).unlink()
        with contextlib.suppress(OSError):
            self.folder.rmdir()


@dataclass
class RankState:
    """What rank 0 knows of another rank at the end."""

    rank: int
    status: str  # reported | died | silent (no report within the timeout) | not_gathered (other node)
    exit_status: int | None = None
    exception: str | None = None
    finished_at: float | None = None
    report: dict[str, Any] | None = None
    host: str | None = None
    waited_s: float | None = None
    started: bool = True

    @property
    def failed(self) -> bool:
        return self.status in ("died", "silent") or (self.status == "reported" and self.exit_status not in (0, None))

    @property
    def kind(self) -> str:
        """How a failed rank failed: on its own, or because another one did (it lost its peer in a
        collective, or torchrun terminated it once another rank had failed)."""
        if self.status == "reported" and self.exit_status in TERMINATED:
            return "terminated"
        if self.exception and LOST_PEER.search(self.exception):
            return "lost_peer"
        return "own"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rank": self.rank, "status": self.status, "exit_status": self.exit_status,
                               "exception": self.exception}
        if self.report is not None:
            out["steps"] = (self.report.get("run") or {}).get("steps")
            out["findings"] = len(self.report.get("findings") or [])
        if self.host:
            out["host"] = self.host
        return out


class GatheredReport(Report):
    """Rank 0's report of a multi-process run: the findings of every rank, and how each rank ended.

    The JSON's `run` gains `ranks` (per rank: status, exit status, exception) and `failed_ranks`;
    the terminal report one line on the ranks."""

    ranks: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.saved is None:
            data["run"]["ranks"] = _jsonable(self.ranks)
            data["run"]["failed_ranks"] = failed_ranks(self.ranks)
        return data

    def render(self, console: Any = None, verbose: bool = False, memory: bool = False,
               findings: bool = True, gradients: bool = False) -> None:
        from rich.text import Text

        from .render.terminal import default_console

        console = console or default_console()
        super().render(console, verbose=verbose, memory=False, findings=findings, gradients=False)
        if findings:
            bad = failed_ranks(self.ranks)
            console.print(Text(ranks_line(self.ranks), style="red" if bad else "dim"))
        if gradients or memory:
            super().render(console, verbose=verbose, memory=memory, findings=False, gradients=gradients)


def merge(own: Report, ctx: RankContext, states: dict[int, RankState], exit_status: int,
          exception: BaseException | None) -> GatheredReport:
    """Rank 0's report with every rank's findings (evidence.rank on each), the world size, and a
    `script_error` for each other rank that failed on its own without saying why, or never reported."""
    own.timeline.run.world_size = ctx.world_size
    tagged: list[tuple[int, Finding]] = [(0, f) for f in own.findings]
    internal = list(own.internal_errors)
    for r in sorted(states):
        state = states[r]
        if state.report is None:
            continue
        try:
            tagged += [(r, f) for f in Report.from_dict(state.report).findings]
        except Exception as exc:
            internal.append(f"rank {r}'s report could not be read: {type(exc).__name__}: {exc}")
        internal += [f"rank {r}: {m}" for m in state.report.get("internal_errors") or []]
    findings = _deduplicate(tagged)
    _explain_spread(findings)
    own_state = RankState(0, "reported", exit_status, _describe(exception), time.time(), host=socket.gethostname())
    everyone = {0: own_state, **states}
    causes = [s.rank for s in sorted(everyone.values(), key=lambda s: (s.finished_at or math.inf, s.rank))
              if s.failed and s.kind == "own"]
    _explain_lost_peer(findings, everyone, causes)
    _name_failed_ranks(findings, causes, ctx.world_size)
    findings += _rank_failures(states, ctx, causes)
    findings.sort(key=_order)
    ranks = [own_state.summary()] + [states[r].summary() for r in sorted(states)]
    for entry in ranks:
        if entry["status"] == "reported":
            entry.setdefault("steps", len(own.timeline.steps) if entry["rank"] == 0 else None)
    values = {f.name: getattr(own, f.name) for f in dataclasses.fields(Report)}
    values.update(findings=findings, internal_errors=internal)
    merged = GatheredReport(**values)
    merged.ranks = ranks
    return merged


def failed_ranks(ranks: list[dict[str, Any]]) -> list[int]:
    return [e["rank"] for e in ranks
            if e["status"] in ("died", "silent") or (e["status"] == "reported" and e["exit_status"] not in (0, None))]


def ranks_line(ranks: list[dict[str, Any]]) -> str:
    """`2 ranks: exit 0: 0 · exit 1 (RuntimeError: ...): 1`, ranks with the same ending grouped."""
    groups: dict[str, list[int]] = {}
    for e in ranks:
        if e["status"] == "reported":
            what = f"exit {e['exit_status']}" + (f" ({_short(e['exception'])})" if e.get("exception") else "")
        else:
            what = {"died": "died without reporting", "silent": "did not report",
                    "not_gathered": "on another node, not gathered"}.get(e["status"], e["status"])
        groups.setdefault(what, []).append(e["rank"])
    parts = [f"{_span(rs)} {what}" for what, rs in groups.items()]
    return f"{len(ranks)} rank{'s' if len(ranks) != 1 else ''}: " + "; ".join(parts)


# -- merging ---------------------------------------------------------------------------
def _with_rank(finding: Finding, rank: int, ranks: list[int] | None = None) -> Finding:
    evidence = {k: v for k, v in finding.evidence.items() if k not in ("rank", "ranks")}
    extra: dict[str, Any] = {"rank": rank}
    if ranks and len(ranks) > 1:
        extra["ranks"] = ranks
    return dataclasses.replace(finding, evidence=extra | evidence)


def _deduplicate(tagged: list[tuple[int, Finding]]) -> list[Finding]:
    """One finding per distinct diagnosis: the same finding made on several ranks (DDP keeps the
    weights and gradients equal across ranks) is kept once, with `rank` the lowest and `ranks` all."""
    seen: dict[str, list[int]] = {}
    first: dict[str, Finding] = {}
    for rank, finding in tagged:
        data = finding.to_dict()
        data["evidence"] = {k: v for k, v in data["evidence"].items() if k not in ("rank", "ranks")}
        key = json.dumps(_jsonable(data), sort_keys=True, default=str)
        if key in seen:
            seen[key].append(rank)
        else:
            seen[key] = [rank]
            first[key] = finding
    return [_with_rank(first[k], rs[0], rs) for k, rs in seen.items()]


def _explain_spread(findings: list[Finding]) -> None:
    """DDP averages the gradients of all ranks: a rank whose loss went NaN hands NaN gradients to
    every other rank at the same step, where they look like a NaN born in backward. Say so."""
    losses = {}
    for f in findings:
        if f.code == "nonfinite_loss" and f.step is not None:
            losses.setdefault(f.step, f.evidence["rank"])
    for i, f in enumerate(findings):
        source = losses.get(f.step) if f.code == "nonfinite_gradient" else None
        if source is None or source == f.evidence["rank"]:
            continue
        rank = f.evidence["rank"]
        fix = Fix("fix_other_rank",
                  f"Fix the nonfinite_loss of rank {source} at step {f.step} first: its non-finite gradients "
                  f"reached rank {rank} through DDP's gradient all-reduce.",
                  {"rank": source, "step": f.step})
        findings[i] = dataclasses.replace(
            f,
            title=f"Gradients went NaN/Inf at step {f.step} on rank {rank} while its loss was finite: the loss of "
                  f"rank {source} was non-finite at that step, and DDP averages the gradients of all ranks",
            evidence=f.evidence | {"from_rank": source},
            fixes=[fix] + [x for x in f.fixes if x.action != "add_epsilon"],
        )


def _explain_lost_peer(findings: list[Finding], ranks: dict[int, RankState], causes: list[int]) -> None:
    """A rank that died in a collective because its peer had died (gloo: "Connection closed by
    peer") is not where the problem is: its script_error names the rank that failed first."""
    if not causes:
        return
    for i, f in enumerate(findings):
        rank = f.evidence.get("rank")
        state = ranks.get(rank) if isinstance(rank, int) else None
        if f.code != "script_error" or state is None or state.kind != "lost_peer" or rank in causes:
            continue
        cause = causes[0]
        findings[i] = dataclasses.replace(
            f,
            title=f"Rank {rank} died at step {f.step} in a collective because rank {cause} had failed: "
                  f"{_short(state.exception or '', 60)}",
            evidence=f.evidence | {"from_rank": cause},
            fixes=[Fix("fix_other_rank", f"Fix rank {cause}'s failure first (its script_error finding): rank {rank} "
                       "only lost its peer in the collective.", {"rank": cause})] + f.fixes,
        )


def _name_failed_ranks(findings: list[Finding], causes: list[int], world_size: int) -> None:
    """The error of a rank that failed on its own opens with its rank: it is the one to read."""
    for i, f in enumerate(findings):
        rank = f.evidence.get("rank")
        if f.code in ("script_error", "out_of_memory") and rank in causes and "from_rank" not in f.evidence:
            findings[i] = dataclasses.replace(f, title=f"Rank {rank} of {world_size}: {f.title}")


def _rank_failures(states: dict[int, RankState], ctx: RankContext, causes: list[int]) -> list[Finding]:
    """A `script_error` for each other rank that failed on its own and left no explanation of its
    own: it exited non-zero without an exception, died without reporting, or never reported. A
    rank that raised already carries its own script_error or out_of_memory (with evidence.rank).
    A rank that failed only because another one did (it lost its peer in a collective, or torchrun
    terminated it) is listed in run.ranks, not made a finding, unless no rank failed on its own.
    The contract has no code of its own for this: a rank's failure is its script's error."""
    out = []
    n = ctx.world_size
    for s in sorted(states.values(), key=lambda s: s.rank):
        if not s.failed or (causes and s.rank not in causes):
            continue
        if s.report is not None and any(f.get("code") in ("script_error", "out_of_memory")
                                        for f in s.report.get("findings") or []):
            continue
        evidence: dict[str, Any] = {"rank": s.rank, "world_size": n, "rank_status": s.status,
                                    "exit_status": s.exit_status, "exception": s.exception}
        if s.status == "reported":
            evidence["kind"] = "rank_exit"
            what = f"{s.exception} (exit status {s.exit_status})" if s.exception else \
                f"it exited with status {s.exit_status}"
            title = f"Rank {s.rank} of {n} failed: {what}"
            fix = Fix("check_rank_exit", f"Find where rank {s.rank} exits with status {s.exit_status} "
                      "(sys.exit, or a library that exits on error): its own output is above.",
                      {"rank": s.rank, "exit_status": s.exit_status})
            if s.exception:
                fix = Fix("fix_rank_error", f"Rank {s.rank} printed its traceback above: fix that error first.",
                          {"rank": s.rank})
        elif s.status == "died":
            evidence["kind"] = "rank_died"
            title = (f"Rank {s.rank} of {n} died without reporting: it was killed (SIGKILL, the out-of-memory "
                     "killer) or crashed in native code; torchrun's error summary has its exit status")
            fix = Fix("check_killed_rank",
                      f"Look for the out-of-memory killer (`dmesg | grep -i kill`): if it killed rank {s.rank}, "
                      "lower each rank's host memory (batch size, DataLoader workers, pinned memory). "
                      "`torchrun --log-dir DIR --redirects 3 --tee 3` keeps each rank's output.",
                      {"rank": s.rank})
        else:
            evidence["kind"] = "rank_silent"
            waited = s.waited_s or 0.0
            why = "it was still running" if s.started else "it never started under torchdoctor"
            shown = f"{waited:.0f}" if waited >= 10 else f"{waited:.1f}"
            title = f"Rank {s.rank} of {n} did not report within {shown} s ({why}, or it hung)"
            evidence["waited_s"] = round(waited, 1)
            longer = max(2 * ctx.timeout_s, 120)
            fix = Fix("raise_gather_timeout",
                      f"If rank {s.rank} was still working, give it longer: {ENV_TIMEOUT}={longer:g}. If it hung in "
                      "a collective, give the process group a timeout: "
                      "dist.init_process_group(backend, timeout=timedelta(minutes=5)).",
                      {"rank": s.rank, "timeout_s": longer})
        out.append(Finding("script_error", Severity.CRITICAL, title,
                           evidence={k: v for k, v in evidence.items() if v is not None}, fixes=[fix]))
    return out


def _order(f: Finding) -> tuple[Any, ...]:
    """Worst first; a cause before what it caused on another rank; by step; then by rank."""
    return (-f.severity, "from_rank" in f.evidence, f.step if f.step is not None else 1 << 62,
            f.evidence.get("rank", 0))


# -- small helpers ----------------------------------------------------------------------
def _describe(exception: BaseException | None) -> str | None:
    if exception is None:
        return None
    if isinstance(exception, SystemExit):
        return None if exception.code in (None, 0) else f"SystemExit: {exception.code}"
    return f"{type(exception).__name__}: {exception}"


def _short(text: str, limit: int = 80) -> str:
    """The first line, without the C++ source location gloo and NCCL put first, cut to `limit`."""
    line = text.strip().splitlines()[0] if text.strip() else text
    line = re.sub(r"\[[^\]\s]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _span(ranks: list[int]) -> str:
    """[0, 1, 2, 5] -> 'ranks 0-2, 5'."""
    ranks = sorted(ranks)
    parts, i = [], 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        parts.append(str(ranks[i]) if i == j else f"{ranks[i]}-{ranks[j]}")
        i = j + 1
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(parts)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _float(value: str | None, default: float) -> float:
    try:
        out = float(value) if value is not None else default
    except ValueError:
        return default
    return out if math.isfinite(out) and out >= 0 else default


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees the whole file or none."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(_jsonable(data), out, allow_nan=False, default=str)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _alive(pid: Any, create_time: float | None) -> bool:
    """Whether the process is still running (a zombie, or a new process with the pid, is not it)."""
    if not isinstance(pid, int):
        return True  # cannot tell: wait for the report or the timeout
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False  # the pid was reused
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _set_sigterm(handler: Any) -> None:
    with contextlib.suppress(ValueError, OSError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
