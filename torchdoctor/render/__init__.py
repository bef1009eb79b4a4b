"""Renderers: show a report; they never decide severity. `render` and `to_text` pick the terminal ones.

The submodules are imported when they are used: `torchdoctor.render.html` (and the light paths
that only need it) must not pay for rich's tables, and a Report never imports anything from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from ..report import Report


def render(report: Report, console: Console | None = None, *, verbose: bool = False, memory: bool = False,
           findings: bool = True, gradients: bool = False) -> None:
    """The terminal report in reading order: the findings (and, for a multi-process run, how each
    rank ended), then the gradient report, then the memory report, each only when asked for."""
    from .terminal import default_console, render_report

    console = console or default_console()
    if findings:
        render_report(report, console=console, verbose=verbose)
        if report.ranks is not None:
            from .ranks import render_ranks

            render_ranks(report, console)
    if gradients:
        from .gradients import render_gradients

        render_gradients(report, console=console, verbose=verbose)
    if memory:
        from .memory import render_memory

        render_memory(report, console=console, verbose=verbose)


def to_text(report: Report, width: int = 100) -> str:
    """The findings report as plain text (no colour, no terminal codes), as a test or a log wants it."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    render(report, Console(file=buf, width=width, color_system=None, force_terminal=False))
    return buf.getvalue()
