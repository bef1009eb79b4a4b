"""How one report is judged against its manifest case: shared by tests/test_calibration.py and
benchmarks/accuracy.py, so the test and the benchmark can never disagree on what passed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torchdoctor.findings import Severity

from .manifest import Case


@dataclass
class Verdict:
    case: Case
    status: int
    findings: list[Any]
    detected: bool = False  # faulty: the right code at the right severity
    step_ok: bool | None = None  # faulty with step bounds: the step inside them
    leads: bool = False  # faulty: the expected finding is the first of warning or above
    causes_ok: bool = True  # every consequence named in the case carries its cause
    clean: bool = False  # healthy: nothing at warning or above
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def describe(findings: Sequence[Any]) -> str:
    """Every finding on one line: code, severity, step, cause and title."""
    if not findings:
        return "  (no findings)"
    lines = []
    for f in findings:
        cause = getattr(f, "caused_by", None)
        because = f" caused_by={cause}" if cause else ""
        lines.append(f"  {f.code} [{Severity(f.severity).label}] step={f.step}{because}: {f.title}")
    return "\n".join(lines)


def judge(case: Case, findings: Sequence[Any], status: int) -> Verdict:
    findings = list(findings)
    v = Verdict(case, status, findings)
    if status != 0:
        v.problems.append(f"the script exited with status {status}")
    alarms = [f for f in findings if f.severity >= Severity.WARNING]
    if case.healthy:
        v.clean = not alarms
        if alarms:
            v.problems.append("alarms on a healthy script: " + ", ".join(
                f"{f.code} [{Severity(f.severity).label}]" for f in alarms))
        return v
    wanted = (case.code, *case.also)
    least = Severity.parse(case.severity)
    found = [f for f in findings if f.code in wanted]
    hits = [f for f in found if f.severity >= least]
    v.detected = bool(hits)
    if not found:
        v.problems.append(f"expected {'/'.join(wanted)} at {least.label} or above: not found")
    elif not hits:
        v.problems.append(f"expected {'/'.join(wanted)} at {least.label} or above: found at "
                          + ", ".join(Severity(f.severity).label for f in found))
    if case.step_min is not None or case.step_max is not None:
        lo = case.step_min if case.step_min is not None else 0
        hi = case.step_max if case.step_max is not None else float("inf")
        v.step_ok = any(f.step is not None and lo <= f.step <= hi for f in hits)
        if hits and not v.step_ok:
            v.problems.append(f"expected {case.code} at a step in [{lo}, {hi}]: at step "
                              + ", ".join(str(f.step) for f in hits))
    v.leads = bool(alarms) and alarms[0].code in wanted
    for code, causes in case.caused_by.items():
        for f in findings:
            if f.code == code and getattr(f, "caused_by", None) not in causes:
                v.causes_ok = False
                v.problems.append(f"{code} must carry caused_by={'/'.join(causes)}: has "
                                  f"{getattr(f, 'caused_by', None)}")
    return v
