"""The one line a multi-process run's report adds: how each rank ended, ranks that ended alike grouped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from ..formatting import short_message

if TYPE_CHECKING:
    from ..report import Report


def render_ranks(report: Report, console: Console) -> None:
    """After the findings of a multi-process run: red when a rank failed, dim when every rank ended well."""
    if report.ranks is None:
        return
    console.print(Text(ranks_line(report.ranks), style="red" if report.failed_ranks() else "dim"))


def ranks_line(ranks: list[dict[str, Any]]) -> str:
    """`3 ranks: ranks 0-1 exit 0; rank 2 exit 1 (RuntimeError: ...)`: ranks that ended alike grouped."""
    groups: dict[str, list[int]] = {}
    for e in ranks:
        if e["status"] == "reported":
            what = f"exit {e['exit_status']}" + (f" ({short_message(e['exception'])})" if e.get("exception") else "")
        else:
            what = {"died": "died without reporting", "silent": "did not report",
                    "not_gathered": "on another node, not gathered"}.get(e["status"], e["status"])
        groups.setdefault(what, []).append(e["rank"])
    parts = [f"{span(rs)} {what}" for what, rs in groups.items()]
    return f"{len(ranks)} rank{'s' if len(ranks) != 1 else ''}: " + "; ".join(parts)


def span(ranks: list[int]) -> str:
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
