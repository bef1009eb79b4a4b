"""Which rank this process is, from the launcher's environment, and what a rank does around the run.

torchrun starts N copies of torchdoctor with RANK, WORLD_SIZE, LOCAL_RANK... in their environment;
`detect` reads them (not torch.distributed: the script has not created its process group yet when
torchdoctor starts, and may have destroyed it when it reports). The `RankContext` it returns is what
the run path calls: `begin` before the script, `finish` after Doctor.stop, where a rank other than 0
leaves its report for rank 0 (exchange.py) and rank 0 merges every rank's (merge.py).

The folder the ranks meet in is `TORCHDOCTOR_GATHER_DIR` when set (a folder every node sees gathers
the ranks of all nodes), else the temporary folder of this machine: then only the ranks on rank 0's
node are gathered, and the others are listed as not gathered. Rank 0 waits
`TORCHDOCTOR_GATHER_TIMEOUT` seconds (default 60) for the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..report import Report
from . import exchange
from .merge import merge

ENV_TIMEOUT = "TORCHDOCTOR_GATHER_TIMEOUT"
ENV_DIR = "TORCHDOCTOR_GATHER_DIR"
DEFAULT_TIMEOUT_S = 60.0
# What a rank other than 0 turns off: it prints nothing, and rank 0 alone writes the report


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
    """One rank of a launch: where the ranks meet, how long rank 0 waits, and whether torchrun has
    asked this rank to stop (`_terminated`, set by the SIGTERM handler `begin` installs)."""

    rank: int
    world_size: int
    local_rank: int
    folder: Path
    timeout_s: float = DEFAULT_TIMEOUT_S
    reachable: list[int] = field(default_factory=list)
    on_main_node: bool = True
    started_at: float = field(default_factory=time.time)
    _terminated: bool = False
    timeout_setting: ClassVar[str] = ENV_TIMEOUT  # what a user sets to change timeout_s

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
            exchange.leave_marker(self)

    def finish(self, report: Report, exit_status: int, exception: BaseException | None,
               disabled: set[str] | None = None) -> Report:
        """After Doctor.stop: a rank other than 0 leaves its report for rank 0 (and returns its own);
        rank 0 waits for theirs and returns the merged report."""
        if not self.is_main:
            if self.publishes:
                with contextlib.suppress(Exception):  # a rank other than 0 prints nothing of torchdoctor's
                    self.publish(report, exit_status, exception)
            return report
        try:
            ranks = self.gather(failed=exit_status not in (0, None))
            return merge(report, self, ranks, exit_status, exception, disabled or set())
        except Exception as exc:  # the run's own report still comes out
            report.internal_errors.append(f"gathering the ranks' reports: {type(exc).__name__}: {exc}")
            report.timeline.run.world_size = self.world_size
            return report

    def publish(self, report: Report, exit_status: int, exception: BaseException | None) -> None:
        """This rank's report, exit status and exception, left for rank 0 (exchange.publish)."""
        exchange.publish(self, report, exit_status, exception)

    def gather(self, failed: bool = False) -> dict[int, exchange.RankState]:
        """Rank 0: wait for the other reachable ranks' reports (exchange.gather)."""
        return exchange.gather(self, failed)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._terminated = True


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


def _set_sigterm(handler: Any) -> None:
    with contextlib.suppress(ValueError, OSError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
