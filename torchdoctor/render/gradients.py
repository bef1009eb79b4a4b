"""The gradient report: per layer, in model order, how large its gradients are, how far each step
moves its weights, and how that went over the run; the layers a finding names stand out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formatting import fmt, sparkline
from .terminal import default_console

if TYPE_CHECKING:
    from ..report import Report

def render_gradients(report: Report, console: Console | None = None, verbose: bool = False) -> None:
    console = console or default_console()
    layers = report.gradient_summary()
    console.print(Text("gradients", style="bold") + Text(f" · {len(layers)} layers, model order", style="dim"))
    if not layers:
        console.print(Text("  no parameter with a gradient was observed", style="dim"))
        return
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    width = min(32, max(len(f"{row['name']} ({row['type']})") for row in layers))
    table.add_column("layer", no_wrap=True, min_width=width, overflow="ellipsis")
    for name in ("norm last", "median", "max", "update/w", "non-finite"):
        table.add_column(name, justify="right", no_wrap=True, min_width=8)
    table.add_column("trend (log)", no_wrap=True, min_width=16)
    table.add_column("", no_wrap=True)
    named: dict[str, list[str]] = {}
    for row in layers:
        share = row["nonfinite_share"]
        for code in row["flagged"]:
            named.setdefault(code, []).append(row["name"])
        table.add_row(
            f"{row['name']} ({row['type']})", fmt(row["norm_last"]), fmt(row["norm_median"]), fmt(row["norm_max"]),
            fmt(row["update_ratio_median"]), f"{share:.0%}" if share else "", sparkline(row["trend"]),
            "◀" if row["flagged"] else "", style="bold red" if row["flagged"] else None,
        )
    console.print(table)
    for code, names in named.items():
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        console.print(Text(f"  ◀ {code}: {shown}", style="red"))
