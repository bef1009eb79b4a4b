"""Findings and fixes: the unit of diagnosis shared by rules, reports and the JSON contract."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so that `--fail-on` and sorting can compare severities directly."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str | Severity) -> Severity:
        if isinstance(text, Severity):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


@dataclass
class Fix:
    """One concrete remedy; `params` carries the numbers derived from the run."""

    action: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    snippet: str | None = None
    # Where in the user's code the change goes: {"file", "line", "before", "after"} (the statement
    # as written and as rewritten), when the probes recorded where the changed thing was made.
    location: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action, "text": self.text, "params": self.params}
        if self.snippet:
            data["snippet"] = self.snippet
        if self.location:
            data["location"] = self.location
        return data


@dataclass
class Finding:
    """A diagnosis: what, where, when, the evidence, and the fixes (most likely first)."""

    code: str
    severity: Severity
    title: str
    step: int | None = None
    epoch: int | None = None
    where: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: list[Fix] = field(default_factory=list)
    # Set by linking (rules/causes.py), never by a rule: the code of the finding that explains
    # this one, and why in one line. The report leads with the cause; the JSON keeps both.
    caused_by: str | None = None
    cause_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity.label,
            "title": self.title,
            "step": self.step,
            "epoch": self.epoch,
            "where": self.where,
            "evidence": self.evidence,
            "fixes": [f.to_dict() for f in self.fixes],
            "caused_by": self.caused_by,
        }
        if self.cause_reason is not None:
            data["cause_reason"] = self.cause_reason
        return data
