"""The terminal report a person reads in ten seconds: the worst trouble first, each cause before
what it explains (marked `↳`), every finding with its fixes."""

from __future__ import annotations

import math
import os
import statistics
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..findings import Finding, Severity
from ..formatting import fmt, format_bytes

if TYPE_CHECKING:
    from ..report import Report

SHOWN_TASKS = ("classification", "detection", "segmentation", "generation")
TREND_WIDTH = 24  # characters of a series' sparkline
BARS = "▁▂▃▄▅▆▇█"

STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.ERROR: "bold red",
    Severity.WARNING: "bold yellow",
    Severity.INFO: "bold blue",
}


def _value(v: Any) -> str | None:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt(v)
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, list) and v and len(v) <= 4 and all(isinstance(x, (str, int, float)) for x in v):
        return ", ".join(_value(x) or "" for x in v)
    return None


def evidence_line(finding: Finding, verbose: bool = False) -> str:
    """The scalar evidence in one line; series and long explanations only when verbose."""
    parts = []
    for key, v in finding.evidence.items():
        if v is None or key in ("step",) or (v is False and not verbose):  # a flag that is off says nothing
            continue
        shown = format_bytes(v) if key.endswith("_bytes") and isinstance(v, int) else _value(v)
        if shown is None or (isinstance(v, str) and len(v) > 48):
            if not verbose:
                continue
            shown = str(v)
        label = key.removesuffix("_bytes") if key.endswith("_bytes") and isinstance(v, int) else key
        parts.append(f"{label.replace('_', ' ')}: {shown}")
    return "; ".join(parts)


def _header(report: Report) -> str:
    run = report.timeline.run
    script = os.path.basename(run.argv[0]) if run.argv else "watched run"
    task = report.timeline.task
    # "other" says only that torchdoctor could not tell; every task it could tell is named, classification too
    bits = [script, *([task] if task in SHOWN_TASKS else []), f"{report.step_count} steps"]
    if run.epochs is not None:
        bits.append(f"{run.epochs} epoch{'' if run.epochs == 1 else 's'}")
    bits.append(run.device)
    if run.duration_s is not None:
        bits.append(f"{run.duration_s:.1f} s")
    if run.exit_status is not None:
        bits.append(f"exit {run.exit_status}")
    return " · ".join(bits)


def healthy_line(report: Report) -> str:
    tl = report.timeline
    if not tl.steps:
        what = "no optimizer.step() was observed"
        if tl.backward_calls:
            what += f" ({tl.backward_calls} backward() calls)"
        return f"nothing to diagnose: {what}"
    bits = [f"{report.step_count} steps"]
    models = tl.model_loss_series()
    # a GAN's step loss is one model's: each model's own loss says how the two are doing
    per_model = [(name, [v for _, v in points if math.isfinite(v)]) for name, points in models.items()]
    shown_models = [f"{name} loss {fmt(vs[0])} → {fmt(vs[-1])}" for name, vs in per_model if vs]
    losses = [v for _, v in tl.loss_series() if math.isfinite(v)]
    if len(models) > 1 and shown_models:
        bits.extend(shown_models)
    elif losses:
        bits.append(f"loss {fmt(losses[0])} → {fmt(losses[-1])}")
    val = [e for e in tl.validation() if e.loss is not None and math.isfinite(e.loss)]
    if val:
        shown = f"val loss {fmt(val[0].loss)} → " if len(val) > 1 else "val loss "
        shown += fmt(val[-1].loss)
        if val[-1].accuracy is not None:
            shown += f" (acc {val[-1].accuracy:.1%})"
        bits.append(shown)
    norms = [v for _, v in tl.grad_norm_series()]
    if norms:
        bits.append(f"grad norm median {fmt(statistics.median(norms))} (max {fmt(max(norms))})")
    return "healthy: " + ", ".join(bits)


def series_label(tl: Any, name: str) -> str:
    """A model's name with its role when the name does not say it already: `netD (discriminator)`."""
    for role in ("generator", "discriminator"):
        if getattr(tl.roles, role) == name and role not in name.lower():
            return f"{name} ({role})"
    return name


def trend(values: list[float], width: int = TREND_WIDTH) -> str:
    """A linear sparkline of at most `width` characters, each the mean of its share of the steps,
    ✗ where any of them was NaN/Inf. Linear, not log as the gradient table's: a loss can be
    negative (a WGAN's), and its curve, not its orders of magnitude, is what is read here."""
    if not values:
        return ""
    buckets = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
    means = [None if not all(math.isfinite(v) for v in b) else sum(b) / len(b) for b in buckets if b]
    finite = [m for m in means if m is not None]
    if not finite:
        return "✗" * len(means)
    low, span = min(finite), (max(finite) - min(finite)) or 1.0
    return "".join("✗" if m is None else BARS[int((m - low) / span * (len(BARS) - 1) + 0.5)] for m in means)


def loss_series_of(report: Report) -> dict[str, list[tuple[str, list[tuple[int, float]]]]]:
    """Each model's loss (a GAN's) and each loss term (a detector's), labelled for a reader, by group."""
    tl = report.timeline
    return {"loss per model": [(series_label(tl, name), points) for name, points in tl.model_loss_series().items()
                               if points],
            "loss per term": [(name, points) for name, points in tl.term_series().items() if points]}


def series_block(report: Report) -> list[str]:
    """One line per loss series (name, trend, first → last, min) under its group's heading, when a
    run has two or more; a plain one-loss run has the healthy line's numbers and needs no block."""
    groups = {title: series for title, series in loss_series_of(report).items() if series}
    every = [name for series in groups.values() for name, _ in series]
    if len(every) < 2:
        return []
    width = max(len(name) for name in every)
    lines = []
    for title, series in groups.items():
        lines.append(f"{title} (first → last, min):")
        for name, points in series:
            values = [v for _, v in points]
            finite = [v for v in values if math.isfinite(v)]
            numbers = f"{fmt(values[0])} → {fmt(values[-1])}" + (f", min {fmt(min(finite))}" if finite else "")
            lines.append(f"  {name.ljust(width)}  {trend(values).ljust(TREND_WIDTH)}  {numbers}")
    return lines


def default_console() -> Console:
    """stderr, so the report never mixes into what the script prints on stdout."""
    console = Console(file=sys.stderr, highlight=False)
    if not console.is_terminal:
        console = Console(file=sys.stderr, highlight=False, width=100)
    return console


def render_report(report: Report, console: Console | None = None, verbose: bool = False) -> None:
    console = console or default_console()
    console.print(Text("torchdoctor ", style="bold") + Text(_header(report), style="dim"))
    shown = report.findings if verbose else report.default_view()[0]  # report.py's one rule, as the HTML's
    caveat = report.caveat()
    if report.healthy and not shown:  # with -v, a healthy run's info findings stand in for the line
        ok = report.timeline.steps and caveat is None
        line = healthy_line(report)
        if caveat is not None and report.timeline.steps:
            numbers = line.removeprefix("healthy: ").split(", ", 1)[1:]  # the step count is in the caveat
            line = " · ".join([caveat, *numbers])
        console.print(Text(("✔ " if ok else "• ") + line, style="green" if ok else "yellow"))
    elif caveat is not None and report.interrupted:
        console.print(Text("• " + caveat, style="yellow"))
    counted = report.count_line(verbose=verbose)
    if counted:
        console.print(Text(counted, style="bold" if report.problems() else "dim"))
    for line in series_block(report):
        console.print(Text(line, style="dim"))
    said: set[tuple[str, str]] = set()
    for n, finding in enumerate(shown):
        cause = report.cause_of(finding)
        _render_finding(console, finding, verbose, report.timeline.module_type, said, cause,
                        under=any(cause is f for f in shown[:n]))
    for event in report.timeline.events_of("compiled"):
        console.print(Text(f"torch.compile'd {event.data.get('model')}: not observed {event.data.get('not_observed')}",
                           style="dim"))
    _render_not_evaluated(console, report, verbose)
    for message in report.internal_errors:
        console.print(Text(f"torchdoctor internal warning: {message}", style="magenta"))


def _render_not_evaluated(console: Console, report: Report, verbose: bool) -> None:
    """Each reason in full with -v; otherwise one line naming the rules, plus the one thing a
    reader should know unasked: that no validation was seen, so overfitting could not be judged."""
    skipped = report.not_evaluated
    if not skipped or not (verbose or report.timeline.steps):
        return
    if verbose:
        for code, why in skipped.items():
            console.print(Text(f"not evaluated: {code} ({why})", style="dim"))
        return
    if "no validation" in skipped.get("overfitting", ""):
        console.print(Text("no validation was observed: overfitting not judged (-v says how to get it seen)",
                           style="dim"))
    rest = [code for code in skipped if not (code == "overfitting" and "no validation" in skipped[code])]
    if rest:
        console.print(Text(f"not evaluated (-v says why): {', '.join(rest)}", style="dim"))


def where_in_file(location: dict[str, Any]) -> str:
    """`train.py:12`, relative to the current directory when the file is under it."""
    path = str(location.get("file", ""))
    try:
        relative = os.path.relpath(path)
        path = relative if not relative.startswith("..") else path
    except ValueError:  # another drive
        pass
    return f"{path}:{location.get('line')}"


def cause_line(finding: Finding, cause: Finding | None) -> str | None:
    """What explains a consequence, in one line: the cause's code, its step, and why."""
    if not finding.caused_by:
        return None
    line = f"caused by {finding.caused_by}"
    if cause is not None and cause.step is not None:
        line += f" (step {cause.step})"
    return line + (f": {finding.cause_reason}" if finding.cause_reason else "")


def _render_finding(console: Console, finding: Finding, verbose: bool,
                    module_type: Any = lambda name: None, said: set[tuple[str, str]] | None = None,
                    cause: Finding | None = None, under: bool = False) -> None:
    """One finding; a consequence says what caused it and, listed after its cause (`under`), hangs
    under it with `↳`; its fixes that repeat the cause's are "as above"."""
    head = Text()
    if under:
        head.append("↳", style="bold")
    head.append(f" {finding.severity.label.upper()} ", style=STYLE[finding.severity])
    head.append(f" {finding.code}", style="bold")
    where = []
    if finding.step is not None:
        where.append(f"step {finding.step}")
    if finding.epoch is not None:
        where.append(f"epoch {finding.epoch}")
    if finding.where:
        kind = module_type(finding.where)
        where.append(f"at {finding.where}" + (f" ({kind})" if kind and kind != finding.where else ""))
    if where:
        head.append(" · " + " · ".join(where), style="cyan")
    console.print(head)
    console.print(Text("  " + finding.title))
    because = cause_line(finding, cause)
    if because:
        console.print(Text("  " + because, style="cyan"))
    line = evidence_line(finding, verbose)
    if line:
        console.print(Text("  evidence: " + line, style="dim"))
    said = set() if said is None else said
    for n, fix in enumerate(finding.fixes, 1):
        if (fix.action, fix.text) in said and not verbose:
            console.print(f"  [bold green]fix {n}[/] [green]{escape(fix.action)}[/]: as above")
            continue
        said.add((fix.action, fix.text))
        console.print(f"  [bold green]fix {n}[/] [green]{escape(fix.action)}[/]: {escape(fix.text)}")
        if fix.location:  # where in the user's file the change goes
            console.print(Text(f"      at {where_in_file(fix.location)}", style="cyan"))
        if fix.snippet:
            for code_line in fix.snippet.splitlines():
                console.print(Text("      " + code_line, style="italic"))
