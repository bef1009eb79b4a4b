"""Rank 0's one report for the whole run: every rank's findings, each tagged with its rank.

Rank 0 reads the findings each other rank left (exchange.py), tags each with `evidence.rank`,
keeps once a finding several ranks made alike (DDP keeps the weights and gradients equal across
ranks), and lets the rank rules (rules/ranks.py) explain them across ranks, name the ranks that
failed, and order them. The merged report also lists how each rank ended (`ranks`: the JSON's
run.ranks and failed_ranks, the terminal's ranks line).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from typing import Any, Protocol

from ..findings import Finding
from ..jsonreport import from_dict, jsonable
from ..report import Report
from ..rules import ddp_out_of_sync as sync_rules
from ..rules import ranks as rank_rules
from .exchange import RankState, describe


class World(Protocol):
    """What merging needs to know of the run's ranks (launch.RankContext is one)."""

    world_size: int
    timeout_s: float
    timeout_setting: str


def merge(own: Report, ctx: World, states: dict[int, RankState], exit_status: int,
          exception: BaseException | None, disabled: set[str] | frozenset[str] = frozenset()) -> Report:
    """Rank 0's report with every rank's findings (evidence.rank on each), the world size, how each
    rank ended, and a `script_error` for each other rank that failed on its own without saying why,
    or never reported."""
    own.timeline.run.world_size = ctx.world_size
    tagged: list[tuple[int, Finding]] = [(0, f) for f in own.findings]
    internal = list(own.internal_errors)
    for r in sorted(states):
        state = states[r]
        if state.report is None:
            continue
        try:
            tagged += [(r, f) for f in from_dict(state.report).findings]
        except Exception as exc:
            internal.append(f"rank {r}'s report could not be read: {type(exc).__name__}: {exc}")
        internal += [f"rank {r}: {m}" for m in state.report.get("internal_errors") or []]
    own_state = RankState(0, "reported", exit_status, describe(exception), time.time(), host=socket.gethostname())
    everyone = {0: own_state, **states}
    merged = _deduplicate(tagged)
    if sync_rules.CODE not in disabled:  # the cross-rank half of the rule, judged here on rank 0
        merged += _out_of_sync(own, states, merged, ctx.world_size, internal)
    findings = rank_rules.explain(merged, {r: s.outcome() for r, s in everyone.items()},
                                  ctx.world_size, ctx.timeout_s, ctx.timeout_setting)
    ranks = [own_state.summary()] + [states[r].summary() for r in sorted(states)]
    for entry in ranks:
        if entry["status"] == "reported":
            entry.setdefault("steps", len(own.timeline.steps) if entry["rank"] == 0 else None)
    return dataclasses.replace(own, findings=findings, internal_errors=internal, ranks=ranks)


def _out_of_sync(own: Report, states: dict[int, RankState], findings: list[Finding], world_size: int,
                 internal: list[str]) -> list[Finding]:
    """A `ddp_out_of_sync` when the ranks' parameter fingerprints differ at the same step, unless a
    rank already found why (its forwards bypassed the DDP wrapper)."""
    if any(f.code == sync_rules.CODE for f in findings):
        return []
    by_rank = {0: sync_rules.fingerprints(own.timeline)}
    by_rank |= {r: s.fingerprints for r, s in states.items() if s.fingerprints}
    try:
        found = sync_rules.compare(by_rank, world_size)
    except Exception as exc:
        internal.append(f"comparing the ranks' parameters: {type(exc).__name__}: {exc}")
        return []
    return [found] if found is not None else []


def _with_rank(finding: Finding, rank: int, ranks: list[int] | None = None) -> Finding:
    evidence = {k: v for k, v in finding.evidence.items() if k not in ("rank", "ranks")}
    extra: dict[str, Any] = {"rank": rank}
    if ranks and len(ranks) > 1:
        extra["ranks"] = ranks
    return dataclasses.replace(finding, evidence=extra | evidence)


def _deduplicate(tagged: list[tuple[int, Finding]]) -> list[Finding]:
    """One finding per distinct diagnosis: the same finding made on several ranks is kept once,
    with `rank` the lowest and `ranks` all."""
    seen: dict[str, list[int]] = {}
    first: dict[str, Finding] = {}
    for rank, finding in tagged:
        data = finding.to_dict()
        data["evidence"] = {k: v for k, v in data["evidence"].items() if k not in ("rank", "ranks")}
        key = json.dumps(jsonable(data), sort_keys=True, default=str)
        if key in seen:
            seen[key].append(rank)
        else:
            seen[key] = [rank]
            first[key] = finding
    return [_with_rank(first[k], rs[0], rs) for k, rs in seen.items()]
