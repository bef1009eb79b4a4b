"""memory_leak: memory that grows step after step, and the graphs of past steps kept alive."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from ..findings import Finding, Fix, Severity
from ..formatting import format_bytes
from ..timeline import MemorySample, Timeline
from .base import NotEvaluated, Param, finding_for, rule


def growth(samples: list[MemorySample], warmup: int) -> tuple[str, float, float, int] | None:
    """(series, bytes per step, share of intervals that rose, steps spanned) of the most exact
    memory series the run has: the CUDA allocator's, malloc's heap, else RSS. Theil-Sen slope:
    one-off jumps (a cache filling, a bigger last batch) do not make a trend."""
    for name in ("allocated", "heap", "rss"):
        points = [(s.step, getattr(s, name)) for s in samples if s.step >= warmup and getattr(s, name) is not None]
        if len(points) >= 8:
            break
    else:
        return None
    if len(points) > 200:
        points = points[:: math.ceil(len(points) / 200)]
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for i, a in enumerate(points) for b in points[i + 1:] if b[0] > a[0]]
    rises = sum(1 for a, b in zip(points, points[1:], strict=False) if b[1] > a[1])
    return name, statistics.median(slopes), rises / (len(points) - 1), points[-1][0] - points[0][0]


@rule("memory_leak", Severity.ERROR, "Memory grows step after step (a graph or tensor kept across steps)",
      {"min_growth_per_step": Param(65536, "bytes per step of steady growth that is a leak"),
       "min_total_growth": Param(16 * 2**20, "bytes the leak must have grown over the run"),
       "rss_factor": Param(16, "how much larger both must be when only RSS was measured (it is noisy)"),
       "min_rising": Param(0.6, "share of sampled intervals in which an exact counter rose"),
       "min_graphs_kept": Param(3, "earlier steps' graphs alive at once that make graphs kept"),
       "serious_share": Param(0.1, "share of the memory available the projected growth must reach to matter"),
       "long_run_steps": Param(1_000_000, "the much longer run a warning is projected over (steps)")})
def memory_leak(tl: Timeline, p: dict[str, float]) -> Iterator[Finding]:
    """What it finds: memory that grows with every step, and autograd graphs of past steps that
    are still alive steps later. Growth is read from the most exact counter there is (the CUDA
    allocator's allocated bytes; on Linux CPU, malloc's bytes in use, where RSS jumps by tens of
    MiB on its own); graphs are tagged at each backward() and checked a few steps later.

    Why it matters: the run gets slower and dies of out-of-memory hours in, far from the line at
    fault. The classic cause is keeping a tensor that requires grad: `total_loss += loss` chains
    every step's graph to the next (the PyTorch FAQ's first memory question), `losses.append(loss)`
    keeps each one, and with `backward(retain_graph=True)`, or a forward with gradients on that
    is never backwarded (validation without `torch.no_grad()`), the saved activations stay too.

    The fix: log numbers, not tensors (`loss.item()`, or `loss.detach()`), drop
    `retain_graph=True` unless a second backward through the same graph needs it, and evaluate
    under `torch.no_grad()`.
    """
    mem = tl.memory
    if len(tl.steps) < 20:
        raise NotEvaluated(f"{len(tl.steps)} steps; a trend needs 20")
    trend = growth(mem.samples, warmup=max(5, len(tl.steps) // 10))
    if trend is None and not mem.graphs_kept:
        raise NotEvaluated("memory was not sampled often enough")
    series, per_step, rising, span = trend if trend is not None else ("", 0.0, 0.0, 0)
    scale = p["rss_factor"] if series == "rss" else 1.0
    grows = (per_step >= p["min_growth_per_step"] * scale and per_step * span >= p["min_total_growth"] * scale
             and (series == "rss" or rising >= p["min_rising"]))
    graphs = mem.graphs_kept >= p["min_graphs_kept"]
    if not grows and not graphs:
        return
    activations = mem.profile.activations if mem.profile is not None else 0
    causes = _causes(tl, per_step if grows else 0.0, activations)
    first = mem.kept_since if graphs else None
    steady = grows or (series != "rss" and per_step > 0 and rising >= p["min_rising"])
    judged = _severity(tl, series, per_step if steady else 0.0, graphs, p)
    size = f"{format_bytes(per_step)} per step" if steady else "a little with every step"
    title = f"Memory grows {size}{judged.projection}: {causes[0][0]}"
    yield finding_for(
        "memory_leak",
        title,
        severity=judged.severity,
        step=first,
        evidence={
            "growth_per_step_bytes": int(per_step) if steady else None,
            "measured_by": {"allocated": "CUDA allocated bytes", "heap": "malloc bytes in use",
                            "rss": "RSS", "": None}[series],
            "steps_measured": span,
            "rising_share": round(rising, 2) if trend is not None else None,
            "graphs_of_earlier_steps_alive": mem.graphs_kept,
            "loss_tensors_of_earlier_steps_alive": mem.losses_kept,
            "retain_graph_calls": mem.retain_graph_calls,
            "activations_per_step_bytes": activations or None,
            "projected_growth_per_10k_steps_bytes": int(per_step * 10_000) if steady else None,
            "run_steps": len(tl.steps),
            "projected_growth_over_10x_this_run_bytes": int(judged.ten_runs) if steady else None,
            "projected_growth_over_long_run_bytes": int(judged.long_run) if steady else None,
            "long_run_steps": judged.long_steps,
            "memory_available_bytes": judged.available,
            "memory_available_is": judged.available_is,
            "severity_because": judged.because,
        },
        fixes=[fix for _, fix in causes],
    )


@dataclass
class Judged:
    """The severity memory_leak gives, and the projections it was derived from."""

    severity: Severity
    ten_runs: float  # bytes the leak grows over a run 10x as long as this one
    long_run: float  # ... over `long_steps` steps
    long_steps: int  # `long_run_steps`, or 1000x this run if that is longer
    available: int | None
    available_is: str | None
    because: str
    projection: str  # for the title: " (6.4 MiB over 10x this run, 0.03% of 23.5 GiB RAM)"


def _severity(tl: Timeline, series: str, per_step: float, graphs: bool, p: dict[str, float]) -> Judged:
    """Error when the growth over a run 10x as long as this one reaches `serious_share` of the
    memory the counter draws on (the device's for CUDA allocated bytes, the machine's RAM
    otherwise: both recorded in the timeline, so a report judged elsewhere is judged the same);
    warning when only a much longer run (`long_run_steps`) would get there; info when even that
    is negligible. Graphs of earlier steps kept alive are a warning at least: the chain grows
    without end and pins whatever the graphs hold, whatever its bytes are today."""
    steps = len(tl.steps)
    ten_runs = per_step * steps * 10
    long_steps = max(int(p["long_run_steps"]), steps * 1000)
    long_run = per_step * long_steps
    if series == "allocated" and tl.memory.capacity:
        available, what = tl.memory.capacity, f"{tl.memory.device} memory"
    elif tl.run.ram_bytes or tl.memory.capacity:
        available, what = tl.run.ram_bytes or tl.memory.capacity, "RAM"
    else:
        available, what = None, None
    share = p["serious_share"]
    if available is None:
        severity = Severity.ERROR if per_step * 10_000 >= 2**30 else Severity.WARNING
        because = "the memory available was not recorded; judged by the growth per 10k steps"
        projection = f" ({format_bytes(per_step * 10_000)} per 10k steps)" if per_step else ""
    else:
        def of(size: float) -> str:
            percent = 100 * size / available
            return f"{percent:.0f}% of {format_bytes(available)} {what}" if percent >= 10 else \
                f"{percent:.2g}% of {format_bytes(available)} {what}"

        if ten_runs >= share * available:
            severity, because = Severity.ERROR, f"a run 10x as long as this one would grow by {of(ten_runs)}"
        elif long_run >= share * available:
            severity, because = Severity.WARNING, f"only a {long_steps:,}-step run would grow by {of(long_run)}"
        else:
            severity, because = Severity.INFO, f"even a {long_steps:,}-step run would grow by only {of(long_run)}"
        if graphs and severity < Severity.WARNING:
            severity, because = Severity.WARNING, because + "; but graphs of earlier steps are kept alive"
        shown = ten_runs if severity is Severity.ERROR else long_run
        over = "10x this run" if severity is Severity.ERROR else f"{_steps(long_steps)} steps"
        projection = f" ({format_bytes(shown)} over {over}, {of(shown)})" if per_step else ""
    return Judged(severity, ten_runs, long_run, long_steps, available, what, because, projection)


def _steps(n: int) -> str:
    """1000000 -> "1M", 80000 -> "80k": the step counts a title names."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


def _causes(tl: Timeline, per_step: float, activations: int) -> list[tuple[str, Fix]]:
    """The likely causes, the one the evidence points at first."""
    mem = tl.memory
    detach = Fix(
        "detach_logged_tensors",
        "Accumulate and log plain numbers: `loss.item()` (or `loss.detach()` to stay on the device). A "
        "tensor that requires grad drags its whole graph along with it.",
        {},
        "total_loss += loss.item()      # not: total_loss += loss\nlosses.append(loss.item())     # not: "
        "losses.append(loss)",
    )
    retain = Fix(
        "drop_retain_graph",
        f"backward(retain_graph=True) was called {mem.retain_graph_calls} times: it keeps every saved "
        "activation of the graph until the graph itself dies. Drop it unless a second backward through "
        "the same graph needs it, and then let the graph go after that backward.",
        {"retain_graph_calls": mem.retain_graph_calls},
        "loss.backward()   # not: loss.backward(retain_graph=True)",
    )
    no_grad = Fix(
        "evaluate_without_grad",
        "Run forwards that are not trained on (validation, logging) under torch.no_grad(): with gradients on "
        "and no backward, each one keeps its activations as long as its output is referenced.",
        {},
        "model.eval()\nwith torch.no_grad():\n    val_loss += criterion(model(x), y).item()",
    )
    causes: list[tuple[str, Fix]] = []
    if mem.losses_kept:
        causes.append(("loss tensors of earlier steps are kept, with their graphs (e.g. losses.append(loss))",
                       detach))
    elif mem.graphs_kept:
        causes.append(("the autograd graphs of earlier steps are kept alive (e.g. total_loss += loss)", detach))
    if mem.retain_graph_calls:
        causes.insert(0 if per_step and activations and per_step >= activations / 2 else len(causes),
                      ("backward(retain_graph=True) keeps each step's saved activations", retain))
    if per_step and activations and per_step >= activations / 2 and not mem.retain_graph_calls:
        causes.append(("about one forward's activations per step are kept: a forward with gradients on "
                       "whose output is never backwarded", no_grad))
    if not causes:
        causes.append(("something allocated every step is kept (a growing list of tensors?)", detach))
    return causes
