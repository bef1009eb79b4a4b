"""How a rule is declared: its code, severity, thresholds and explanation live in one place."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..findings import Finding, Severity
from ..timeline import Timeline


class NotEvaluated(Exception):
    """Raised by a rule that lacks the data it needs; the report says why instead of staying silent."""


@dataclass(frozen=True)
class Param:
    default: float
    help: str


RuleFunc = Callable[[Timeline, dict[str, float]], Iterable[Finding]]


@dataclass
class Rule:
    code: str
    severity: Severity
    summary: str
    func: RuleFunc
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def explanation(self) -> str:
        """The rule function's docstring is the one and only explanation (`torchdoctor explain`)."""
        return inspect.cleandoc(self.func.__doc__ or self.summary)

    def defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.params.items()}

    def run(self, timeline: Timeline, params: dict[str, float]) -> list[Finding]:
        """The rule's findings; those that say no severity of their own get the declared one."""
        found = list(self.func(timeline, params))
        for f in found:
            if f.severity is None:
                f.severity = self.severity
        return found


def rule(
    code: str, severity: Severity, summary: str, params: dict[str, Param] | None = None
) -> Callable[[RuleFunc], Rule]:
    """Declare a rule function under its contract code. The declaration is the Rule itself: the
    catalogue (rules/__init__.py) lists every rule by name, nothing registers on import."""

    def declare(func: RuleFunc) -> Rule:
        return Rule(code, severity, summary, func, dict(params or {}))

    return declare


def finding_for(code: str, title: str, **kwargs: Any) -> Finding:
    """A finding of `code`, with the rule's declared severity (filled in by Rule.run) unless the
    caller gives one."""
    severity = kwargs.pop("severity", None)
    return Finding(code=code, severity=severity, title=title, **kwargs)  # type: ignore[arg-type]
