"""The files between ranks: each rank other than 0 leaves its report for rank 0, which waits for them.

The gathering goes through files, not the process group: the script may have destroyed its group
before torchdoctor reports, and a rank whose peer died cannot use it. Files also tell a rank that
died apart from one that is slow: each rank leaves a marker with its pid when it starts, so a rank
that was killed without reporting (SIGKILL, the out-of-memory killer, a segfault) is named as soon
as its process is gone, not only after the timeout.

Rank 0 waits `ctx.timeout_s` for the others; once a rank has failed (or rank 0 itself failed, or
torchrun sent it SIGTERM to stop the group) it waits at most `AFTER_FAILURE_S` more, well inside the
30 s torchrun gives a terminated worker before it kills it. What rank 0 knows of each other rank at
the end is a `RankState`; what it means is decided in rules/ranks.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..jsonreport import jsonable, to_dict
from ..report import Report
from ..rules.ddp_out_of_sync import fingerprints
from ..rules.ranks import RankOutcome, failure_kind, has_failed


class RankPlace(Protocol):
    """What the exchange needs to know of a rank (launch.RankContext is one); a protocol, so the
    exchange depends on no launcher code."""

    rank: int
    local_rank: int
    world_size: int
    folder: Path
    timeout_s: float
    reachable: list[int]
    started_at: float
    _terminated: bool

AFTER_FAILURE_S = 10.0  # torchrun kills a worker 30 s after its SIGTERM; rank 0 must have reported by then
AFTER_SIGTERM_S = 15.0  # still well inside the 30 s torchrun gives a SIGTERMed worker
POLL_S = 0.1
STALE_S = 120.0  # a rank file from a process started this long before rank 0 is a leftover of another run
FILE_VERSION = 1


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
    fingerprints: list[dict[str, Any]] | None = None  # its parameters' fingerprints (ddp_out_of_sync)

    @property
    def failed(self) -> bool:
        return has_failed(self.status, self.exit_status)

    @property
    def kind(self) -> str:
        """How a failed rank failed: on its own, or because another one did (rules.ranks.failure_kind)."""
        return failure_kind(self.status, self.exit_status, self.exception)

    def outcome(self) -> RankOutcome:
        """The plain data the rank rules read."""
        codes = tuple(str(f.get("code")) for f in (self.report or {}).get("findings") or [])
        return RankOutcome(self.rank, self.status, self.exit_status, self.exception, self.finished_at, codes,
                           self.waited_s, self.started)

    def summary(self) -> dict[str, Any]:
        """This rank's entry in the report's run.ranks."""
        out: dict[str, Any] = {"rank": self.rank, "status": self.status, "exit_status": self.exit_status,
                               "exception": self.exception}
        if self.report is not None:
            out["steps"] = (self.report.get("run") or {}).get("steps")
            out["findings"] = len(self.report.get("findings") or [])
        if self.host:
            out["host"] = self.host
        return out


def leave_marker(ctx: RankPlace) -> None:
    """When the rank starts: its pid, so that rank 0 can tell when it is gone without reporting."""
    _write_json(_marker(ctx.folder, ctx.rank),
                {"rank": ctx.rank, "pid": os.getpid(), "host": socket.gethostname(),
                 "create_time": _create_time(os.getpid()), "started_at": ctx.started_at})


def publish(ctx: RankPlace, report: Report, exit_status: int, exception: BaseException | None) -> None:
    """A rank other than 0, at the end: its report, exit status and exception, for rank 0."""
    _write_json(_report_file(ctx.folder, ctx.rank), {
        "torchdoctor_rank_report": FILE_VERSION,
        "rank": ctx.rank,
        "local_rank": ctx.local_rank,
        "world_size": ctx.world_size,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": ctx.started_at,
        "finished_at": time.time(),
        "exit_status": exit_status,
        "exception": describe(exception),
        "terminated": ctx._terminated,
        "report": to_dict(report),
        "fingerprints": fingerprints(report.timeline),
    })


def gather(ctx: RankPlace, failed: bool = False) -> dict[int, RankState]:
    """Rank 0: wait for the other reachable ranks' reports; name the ones that did not come."""
    others = [r for r in ctx.reachable if r != 0]
    states: dict[int, RankState] = {}
    start = time.monotonic()
    deadline = start + ctx.timeout_s
    if failed:
        deadline = min(deadline, start + AFTER_FAILURE_S)
    terminated_seen = False
    while True:
        for r in others:
            if r in states:
                continue
            data = _read_json(_report_file(ctx.folder, r))
            if data is not None and data.get("started_at", 0) >= ctx.started_at - STALE_S:
                states[r] = RankState(r, "reported", data.get("exit_status"), data.get("exception"),
                                      data.get("finished_at"), data.get("report"), data.get("host"),
                                      fingerprints=data.get("fingerprints"))
                if states[r].exit_status not in (0, None):
                    deadline = min(deadline, time.monotonic() + AFTER_FAILURE_S)
                continue
            marker = _read_json(_marker(ctx.folder, r))
            if marker is not None and marker.get("started_at", 0) >= ctx.started_at - STALE_S \
                    and marker.get("host") == socket.gethostname() \
                    and not _alive(marker.get("pid"), marker.get("create_time")):
                # gone without a report: the report is written (atomically) before the process
                # ends, so look once more, then it died without reporting
                data = _read_json(_report_file(ctx.folder, r))
                if data is None:
                    states[r] = RankState(r, "died", finished_at=time.time())
                    deadline = min(deadline, time.monotonic() + AFTER_FAILURE_S)
        if all(r in states for r in others):
            break
        if ctx._terminated and not terminated_seen:
            terminated_seen = True
            deadline = min(deadline, time.monotonic() + AFTER_SIGTERM_S)
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    waited = time.monotonic() - start
    for r in others:
        if r not in states:
            started = _read_json(_marker(ctx.folder, r)) is not None
            states[r] = RankState(r, "silent", waited_s=waited, started=started)
    for r in range(ctx.world_size):
        if r != 0 and r not in ctx.reachable:
            states[r] = RankState(r, "not_gathered")
    _clean(ctx.folder, others)
    return states


def describe(exception: BaseException | None) -> str | None:
    """An exception as a rank's file holds it: "RuntimeError: ..."; a clean sys.exit is none."""
    if exception is None:
        return None
    if isinstance(exception, SystemExit):
        return None if exception.code in (None, 0) else f"SystemExit: {exception.code}"
    return f"{type(exception).__name__}: {exception}"


def _report_file(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank}.json"


def _marker(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank}.start.json"


def _clean(folder: Path, ranks: list[int]) -> None:
    for r in ranks:
        for path in (_report_file(folder, r), _marker(folder, r)):
            with contextlib.suppress(OSError):
                path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees the whole file or none."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(jsonable(data), out, allow_nan=False, default=str)
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
