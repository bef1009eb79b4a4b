"""The loop of `torchdoctor fix`: run, pick the worst finding's fix, apply it from outside, re-run,
compare; up to `tries` fixes in turn, the earlier ones kept applied.

Every run goes through `Doctor.run` (the script re-executed as `__main__`, nothing printed), and
each starts from the random state the first one started from: a script that seeds itself seeds
itself as before, and one that does not still draws the same numbers in every run, so what changed
between two runs is the fix, not the dice.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..execfile import Target
from ..findings import Finding, Fix
from ..formatting import BARS, fmt, log_bounds, sparkline
from ..report import Report
from ..session import Doctor, RunResult
from .apply import intervention, supported


@dataclass
class RunSummary:
    """What the before/after table shows of one run."""

    label: str
    problems: list[str]
    healthy: bool
    script_status: int
    first_loss: float | None
    last_loss: float | None
    val_loss: float | None
    losses: list[float] = field(default_factory=list)  # the training loss, in CURVE_POINTS chunk means
    val_losses: list[float] = field(default_factory=list)  # each validation pass's loss


@dataclass
class FixResult:
    attempts: list[dict[str, Any]] = field(default_factory=list)
    healed: bool = False
    patch: str = ""
    runs: list[RunSummary] = field(default_factory=list)
    cannot_apply: list[str] = field(default_factory=list)  # "code: action", fixes no intervention applies

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "healed": self.healed, "patch": self.patch}


class _RandomState:
    """The random state of torch (CPU) and Python's `random` when the command started, put back
    before every run."""

    def __init__(self) -> None:
        self.torch = torch.random.get_rng_state()
        self.python = random.getstate()

    def restore(self) -> None:
        torch.random.set_rng_state(self.torch)
        random.setstate(self.python)


def fix_script(target: Target, args: Sequence[str], config: Config | None = None, tries: int = 3,
               base: str | Path | None = None, on_run: Callable[[RunSummary], None] | None = None) -> FixResult:
    """Run `target`, then apply up to `tries` fixes, each the first fix not yet tried of the worst
    finding that has one applicable from outside; a fix that leaves its finding in place is undone
    before the next is tried (unless the finding asks for more of the same, a learning rate lower
    still: that goes on top), one that cures it stays; stop when a run is healthy. `base` is where the
    patch's paths start (the working directory)."""
    state = _RandomState()
    result = FixResult()
    applied: list[tuple[Finding, Fix]] = []
    tried: set[tuple[str, str]] = set()

    def one_run(label: str) -> RunResult:
        with contextlib.ExitStack() as stack:
            for _, fix in applied:
                stack.enter_context(intervention(fix.action, fix.params))
            state.restore()
            run = Doctor(config=config, print_report=False).run(target, list(args))
        summary = summarize(label, run)
        result.runs.append(summary)
        if on_run is not None:
            on_run(summary)
        return run

    current = one_run("before")
    result.cannot_apply = cannot_apply(current.report)
    while not is_healthy(current) and len(result.attempts) < tries:
        picked = pick(current.report, tried)
        if picked is None:
            break
        finding, fix = picked
        tried.add((finding.code, fix.action))
        applied.append((finding, fix))  # a second lr fix scales what the first left, as the run saw it
        after = one_run(f"fix {len(result.attempts) + 1}")
        result.attempts.append({"finding": finding.code, "fix": fix.action, "params": _plain(fix.params),
                                "findings_after": [f.code for f in after.report.problems()],
                                "healthy_after": is_healthy(after), "kept": True})
        still = after.report.by_code(finding.code)
        if still is not None and after.script_status == current.script_status:
            again = next((x for x in still.fixes if x.action == fix.action and supported(x.action, x.params)), None)
            if again is not None and again.params != fix.params:
                tried.discard((finding.code, fix.action))  # not far enough: the rule's new numbers go on top
            else:
                applied.pop()  # it did not cure its finding: the finding's next fix is tried without it
                result.attempts[-1]["kept"] = False
                continue
        current = after
    result.healed = is_healthy(current)
    result.patch = patch_of(current.report, applied, base) if result.attempts else ""
    return result


def is_healthy(run: RunResult) -> bool:
    """No finding at warning or above, and the script ended by itself with status 0."""
    return run.report.healthy and run.script_status == 0


def pick(report: Report, tried: set[tuple[str, str]]) -> tuple[Finding, Fix] | None:
    """The worst problem (highest severity; the report's order among equals) with a fix not yet
    tried for it: its fixes in the rule's order, the first that can be applied from outside; None
    when there is none."""
    ranked = sorted(report.problems(), key=lambda f: -int(f.severity))
    for finding in ranked:
        fix = next((x for x in finding.fixes if supported(x.action, x.params)
                    and (finding.code, x.action) not in tried), None)
        if fix is not None:
            return finding, fix
    return None


def cannot_apply(report: Report) -> list[str]:
    """The problems none of whose fixes `torchdoctor fix` can apply from outside the code."""
    return [f"{f.code}: {f.fixes[0].action if f.fixes else 'no fix'}" for f in report.problems()
            if not any(supported(x.action, x.params) for x in f.fixes)]


def patch_of(report: Report, applied: list[tuple[Finding, Fix]], base: str | Path | None) -> str:
    """The unified diff of the applied fixes that name a line of the script (the last applied first,
    so it wins a line two of them rewrite); "" when none does."""
    from ..render.patch import unified_diff

    located = [Finding(f.code, f.severity, f.title, fixes=[fix]) for f, fix in reversed(applied) if fix.location]
    if not located:
        return ""
    return unified_diff(Report(timeline=report.timeline, findings=located), base)


def summarize(label: str, run: RunResult) -> RunSummary:
    tl = run.report.timeline
    losses = tl.loss_series()
    validation = tl.validation()
    return RunSummary(label, [f.code for f in run.report.problems()], is_healthy(run), run.script_status,
                      losses[0][1] if losses else None, losses[-1][1] if losses else None,
                      validation[-1].loss if validation else None, _chunks([v for _, v in losses]),
                      [e.loss for e in validation if e.loss is not None][-CURVE_POINTS:])


CURVE_POINTS = 16


def _chunks(values: list[float], points: int = CURVE_POINTS) -> list[float]:
    """`values` as at most `points` means of consecutive chunks (a non-finite chunk stays so)."""
    if len(values) <= points:
        return list(values)
    size = len(values) / points
    return [sum(chunk) / len(chunk) for i in range(points)
            if (chunk := values[int(i * size):int((i + 1) * size)] or values[-1:])]


def curves(series: list[list[float]]) -> list[str]:
    """Each run's curve as a sparkline on one log scale for all of them, so the columns compare;
    ✗ where the loss was NaN/Inf."""
    bounds = log_bounds([v for s in series for v in s])
    if bounds is None:
        return ["" for _ in series]
    return [sparkline(s, bounds, zero=BARS[0]) for s in series]


def table(result: FixResult) -> str:
    """Before and after side by side: one column per run, a row per problem any run had, then the
    first and last training loss and its curve, the last validation loss and its curve (the
    curves of all runs on one scale)."""
    runs = result.runs
    headers = [r.label for r in runs]
    for i, attempt in enumerate(result.attempts):
        headers[i + 1] = f"+{attempt['fix']}" + ("" if attempt.get("kept", True) else " (undone)")
    codes: list[str] = []
    for r in runs:
        codes += [c for c in r.problems if c not in codes]
    rows: list[list[str]] = [[code, *("present" if code in r.problems else "gone" for r in runs)] for code in codes]
    rows.append(["first loss", *(fmt(r.first_loss) for r in runs)])
    rows.append(["last loss", *(fmt(r.last_loss) for r in runs)])
    rows.append(["loss curve", *curves([r.losses for r in runs])])
    if any(r.val_loss is not None for r in runs):
        rows.append(["validation loss", *(fmt(r.val_loss) for r in runs)])
        rows.append(["validation curve", *curves([r.val_losses for r in runs])])
    if any(r.script_status for r in runs):
        rows.append(["script status", *(str(r.script_status) for r in runs)])
    rows.append(["healthy", *("yes" if r.healthy else "no" for r in runs)])
    grid = [["", *headers], *rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in grid)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """The fix's params as JSON takes them (a non-finite number as a string)."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in params.items()}
