"""Rank failures under torchrun: which rank to blame, and what the others' findings mean.

Part of the `script_error` diagnosis (the contract has no code of its own for a rank's failure:
a rank's failure is its script's error), so nothing here is registered as a rule. Rank 0 calls
`explain` once it has every rank's findings (each with `evidence.rank`) and an outcome per rank;
everything here is a pure function of that plain data: no files, no clock, no process table.

- A rank fails on its own, or because another one did: it lost its peer in a collective (gloo's
  "Connection closed by peer", NCCL's watchdog), or torchrun terminated it once another rank had
  failed (`failure_kind`). The ranks that failed on their own, earliest first, are the causes.
- A cause's error opens with its rank; a rank that only lost its peer points at the cause; a rank
  whose gradients went NaN because another rank's loss did (DDP averages the gradients) says so.
- A rank that failed on its own and left no explanation (it exited non-zero without an exception,
  died without reporting, or never reported) gets a `script_error` of its own.
"""

from __future__ import annotations

import dataclasses
import math
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..findings import Finding, Fix, Severity
from ..formatting import short_message
from .causes import regroup

TERMINATED = (128 + signal.SIGTERM, 128 + signal.SIGINT)  # stopped from outside: torchrun, Ctrl-C
# What a collective raises on a rank whose peer died or hung (gloo, NCCL, the store)
LOST_PEER = re.compile(r"closed by peer|reset by peer|remote worker|broken pipe|connection refused|"
                       r"communicator was aborted|NCCL error|watchdog caught|timed out|timeout", re.IGNORECASE)
OWN, LOST, STOPPED = "own", "lost_peer", "terminated"
EXPLAINED = ("script_error", "out_of_memory")  # a rank whose report has one of these explained itself


def has_failed(status: str, exit_status: int | None) -> bool:
    """Whether a rank failed: it died, never reported, or reported a non-zero exit status.

    `status` is how rank 0 heard of it: reported | died | silent | not_gathered (on another node)."""
    return status in ("died", "silent") or (status == "reported" and exit_status not in (0, None))


def failure_kind(status: str, exit_status: int | None, exception: str | None) -> str:
    """How a failed rank failed: on its own ("own"), or because another one did: torchrun
    terminated it once another rank had failed ("terminated"), or it lost its peer in a
    collective ("lost_peer")."""
    if status == "reported" and exit_status in TERMINATED:
        return STOPPED
    if exception and LOST_PEER.search(exception):
        return LOST
    return OWN


@dataclass(frozen=True)
class RankOutcome:
    """How one rank ended, as rank 0 knows it: the plain data the rank rules read."""

    rank: int
    status: str  # reported | died | silent (no report within the wait) | not_gathered (other node)
    exit_status: int | None = None
    exception: str | None = None  # "RuntimeError: ..." as the rank described it
    finished_at: float | None = None  # when it ended (seconds since the epoch), if known
    codes: tuple[str, ...] = ()  # the codes of the findings in its own report
    waited_s: float | None = None  # how long rank 0 waited for a silent rank
    started: bool = True  # a silent rank left its start marker: it ran under torchdoctor

    @property
    def failed(self) -> bool:
        return has_failed(self.status, self.exit_status)

    @property
    def kind(self) -> str:
        return failure_kind(self.status, self.exit_status, self.exception)


def explain(findings: Sequence[Finding], ranks: Mapping[int, RankOutcome], world_size: int, timeout_s: float,
            timeout_setting: str) -> list[Finding]:
    """Every rank's findings (deduplicated, each with evidence.rank), explained across ranks, with a
    `script_error` for each rank that failed unexplained, ordered cause first.

    `ranks` holds every rank's outcome, rank 0's included; `timeout_s` is how long rank 0 waits
    for the others, and `timeout_setting` the environment variable that sets it."""
    out = explain_spread(findings)
    blamed = causes(ranks)
    out = explain_lost_peer(out, ranks, blamed)
    out = name_failed_ranks(out, blamed, world_size)
    out += rank_failures(ranks, blamed, world_size, timeout_s, timeout_setting)
    return regroup(out, key=order)


def causes(ranks: Mapping[int, RankOutcome]) -> list[int]:
    """The ranks that failed on their own, the one that ended first first (by rank when unknown)."""
    ended = sorted(ranks.values(), key=lambda s: (s.finished_at or math.inf, s.rank))
    return [s.rank for s in ended if s.failed and s.kind == OWN]


def explain_spread(findings: Sequence[Finding]) -> list[Finding]:
    """DDP averages the gradients of all ranks: a rank whose loss went NaN hands NaN gradients to
    every other rank at the same step, where they look like a NaN born in backward. Say so."""
    losses: dict[int, Any] = {}
    for f in findings:
        if f.code == "nonfinite_loss" and f.step is not None:
            losses.setdefault(f.step, f.evidence["rank"])
    out = list(findings)
    for i, f in enumerate(out):
        source = losses.get(f.step) if f.code == "nonfinite_gradient" else None
        if source is None or source == f.evidence["rank"]:
            continue
        rank = f.evidence["rank"]
        fix = Fix("fix_other_rank",
                  f"Fix the nonfinite_loss of rank {source} at step {f.step} first: its non-finite gradients "
                  f"reached rank {rank} through DDP's gradient all-reduce.",
                  {"rank": source, "step": f.step})
        out[i] = dataclasses.replace(
            f,
            title=f"Gradients went NaN/Inf at step {f.step} on rank {rank} while its loss was finite: the loss of "
                  f"rank {source} was non-finite at that step, and DDP averages the gradients of all ranks",
            evidence=f.evidence | {"from_rank": source},
            fixes=[fix] + [x for x in f.fixes if x.action != "add_epsilon"],
        )
    return out


def explain_lost_peer(findings: Sequence[Finding], ranks: Mapping[int, RankOutcome],
                      blamed: Sequence[int]) -> list[Finding]:
    """A rank that died in a collective because its peer had died (gloo: "Connection closed by
    peer") is not where the problem is: its script_error names the rank that failed first."""
    out = list(findings)
    if not blamed:
        return out
    for i, f in enumerate(out):
        rank = f.evidence.get("rank")
        state = ranks.get(rank) if isinstance(rank, int) else None
        if f.code != "script_error" or state is None or state.kind != LOST or rank in blamed:
            continue
        cause = blamed[0]
        out[i] = dataclasses.replace(
            f,
            title=f"Rank {rank} died at step {f.step} in a collective because rank {cause} had failed: "
                  f"{short_message(state.exception or '', 60)}",
            evidence=f.evidence | {"from_rank": cause},
            fixes=[Fix("fix_other_rank", f"Fix rank {cause}'s failure first (its script_error finding): rank {rank} "
                       "only lost its peer in the collective.", {"rank": cause})] + f.fixes,
        )
    return out


def name_failed_ranks(findings: Sequence[Finding], blamed: Sequence[int], world_size: int) -> list[Finding]:
    """The error of a rank that failed on its own opens with its rank: it is the one to read."""
    out = list(findings)
    for i, f in enumerate(out):
        rank = f.evidence.get("rank")
        if f.code in EXPLAINED and rank in blamed and "from_rank" not in f.evidence:
            out[i] = dataclasses.replace(f, title=f"Rank {rank} of {world_size}: {f.title}")
    return out


def rank_failures(ranks: Mapping[int, RankOutcome], blamed: Sequence[int], world_size: int, timeout_s: float,
                  timeout_setting: str) -> list[Finding]:
    """A `script_error` for each rank other than 0 that failed on its own and left no explanation
    of its own: it exited non-zero without an exception, died without reporting, or never reported.
    A rank that raised already carries its own script_error or out_of_memory (with evidence.rank),
    and so does rank 0, the rank that reports. A rank that failed only because another one did (it
    lost its peer in a collective, or torchrun terminated it) is listed in run.ranks, not made a
    finding, unless no rank failed on its own."""
    out = []
    n = world_size
    for s in sorted(ranks.values(), key=lambda s: s.rank):
        if s.rank == 0 or not s.failed or (blamed and s.rank not in blamed):
            continue
        if any(code in EXPLAINED for code in s.codes):
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
            longer = max(2 * timeout_s, 120)
            fix = Fix("raise_gather_timeout",
                      f"If rank {s.rank} was still working, give it longer: {timeout_setting}={longer:g}. If it hung "
                      "in a collective, give the process group a timeout: "
                      "dist.init_process_group(backend, timeout=timedelta(minutes=5)).",
                      {"rank": s.rank, "timeout_s": longer})
        out.append(Finding("script_error", Severity.CRITICAL, title,
                           evidence={k: v for k, v in evidence.items() if v is not None}, fixes=[fix]))
    return out


def order(f: Finding) -> tuple[Any, ...]:
    """Worst first; a cause before what it caused on another rank; by step; then by rank."""
    return (-f.severity, "from_rank" in f.evidence, f.step if f.step is not None else 1 << 62,
            f.evidence.get("rank", 0))
