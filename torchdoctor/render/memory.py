"""The memory report: where a training step's memory goes, per module, and how it moved over the run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formatting import format_bytes
from .terminal import default_console

if TYPE_CHECKING:
    from ..report import Report


def render_memory(report: Report, console: Console | None = None, verbose: bool = False) -> None:
    console = console or default_console()
    data = report.memory_summary()
    profile = report.timeline.memory.profile
    console.print(Text("memory", style="bold") + Text(f" · {data['device']}", style="dim"))
    peaks = []
    if data["peak_allocated_bytes"] is not None:
        peaks.append(f"CUDA peak allocated {format_bytes(data['peak_allocated_bytes'])}, "
                     f"reserved {format_bytes(data['peak_reserved_bytes'])}, "
                     f"fragmentation {format_bytes(data['fragmentation_bytes'])}")
    if data["peak_rss_bytes"] is not None:
        peaks.append(f"peak RSS {format_bytes(data['peak_rss_bytes'])}")
    if data["capacity_bytes"] is not None:
        peaks.append(f"capacity {format_bytes(data['capacity_bytes'])}")
    if data["budget_bytes"] is not None:
        peaks.append(f"budget {format_bytes(data['budget_bytes'])}")
    console.print("  " + " · ".join(peaks))
    if profile is None:
        console.print(Text("  no training step was measured (no forward with gradients was seen)", style="dim"))
        return
    total = profile.step_total
    console.print(
        f"  training step (measured at step {profile.step}, batch size {profile.batch_size or 'unknown'}): "
        f"about {format_bytes(total)} = parameters {format_bytes(profile.parameters)} + gradients "
        f"{format_bytes(profile.gradients)} + optimizer state {format_bytes(profile.optimizer_state)} + "
        f"activations {format_bytes(profile.activations + profile.batch)}"
        + (f" ({format_bytes(profile.per_sample)} per sample)" if profile.per_sample else "")
    )
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for name, justify in [("module", "left"), ("type", "left"), ("parameters", "right"),
                          ("gradients", "right"), ("activations", "right"), ("share of peak", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    rows = [m for m in profile.modules if m.parameters or m.activations] if verbose else profile.top_level()
    for m in rows:
        share = (m.parameters + m.gradients + m.activations) / total if total else 0.0
        name = f"{m.name} (own ops)" if m.name == profile.root else m.name
        table.add_row(name, m.type, format_bytes(m.parameters), format_bytes(m.gradients),
                      format_bytes(m.activations), f"{share:.1%}")
    if profile.batch:
        table.add_row("(input batch)", "", "", "", format_bytes(profile.batch), f"{profile.batch / total:.1%}")
    if profile.optimizer_state:
        table.add_row("(optimizer state)", "", "", "", "", f"{profile.optimizer_state / total:.1%}")
    console.print(table)
    samples = report.timeline.memory.samples
    if len(samples) >= 2:
        first, last = samples[0], samples[-1]
        moved = []
        if first.rss is not None and last.rss is not None:
            moved.append(f"RSS {format_bytes(first.rss)} → {format_bytes(last.rss)}")
        if first.allocated is not None and last.allocated is not None:
            moved.append(f"CUDA allocated {format_bytes(first.allocated)} → {format_bytes(last.allocated)}")
        console.print(Text(f"  over the run (steps {first.step}–{last.step}): " + ", ".join(moved), style="dim"))
