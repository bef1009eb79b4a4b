"""memory_leak: memory that grows step after step, and the graphs of past steps kept alive."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator

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
       "min_graphs_kept": Param(3, "earlier steps' graphs alive at once that make graphs kept")})
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
    size = f"{format_bytes(per_step)} per step" if steady else "a little with every step"
    title = f"Memory grows {size}: {causes[0][0]}"
    yield finding_for(
        "memory_leak",
        title,
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
        },
        fixes=[fix for _, fix in causes],
    )


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
