"""rank_failed: in a distributed run, a rank that failed on its own, died, or never reported."""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Severity
from ..timeline import Timeline
from .base import rule


@rule("rank_failed", Severity.CRITICAL, "A rank of a distributed (torchrun) run failed, died or never reported")
def rank_failed(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: under `torchrun ... torchdoctor run train.py`, each rank observes its own
    process and rank 0 gathers every rank's report (torchdoctor/distributed.py). A rank that
    raised or exited non-zero on its own, that died without reporting (killed: SIGKILL, the
    out-of-memory killer, a crash in native code), or that did not report in time (still
    running, or hung in a collective) is named here, with its exit status and exception. A rank
    that failed only because another did (it lost its peer in an all-reduce, or torchrun
    terminated it) is listed in the report's `run.ranks`, and its own finding points at the rank
    that failed first.

    Why it matters: in a distributed run every rank's error message looks alike ("connection
    closed by peer"); only one of them is the cause.

    This finding is made when rank 0 gathers the ranks' reports, not from one rank's timeline:
    in a single process there is nothing for this rule to find.
    """
    return iter(())
