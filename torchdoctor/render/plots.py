"""Plots for the HTML report, drawn from the JSON report alone so a saved report renders like a live one.

Each plot function takes the report dict and returns PNG bytes, or None when the run recorded nothing
to draw. matplotlib is imported inside the functions: `import torchdoctor` must stay light, and a
missing matplotlib only costs the plots, never the page.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import Any

DPI = 100
WIDTH = 9.6  # inches: 960 px at DPI
TYPICAL_UPDATE_RATIO = (1e-4, 1e-2)
MIB = 2**20
FLAG_COLOR = "#c0392b"
MEMORY_SERIES = {"rss_bytes": "process RSS", "heap_bytes": "malloc heap in use", "allocated_bytes": "CUDA allocated",
                 "reserved_bytes": "CUDA reserved"}
LEAK_COUNTERS = {"CUDA allocated bytes": "allocated_bytes", "malloc bytes in use": "heap_bytes", "RSS": "rss_bytes"}
LABEL_GAP = 0.03  # share of the x range within which findings' labels share one line


def number(value: Any) -> float:
    """JSON reports carry NaN/Inf as "nan"/"inf"/"-inf" and unmeasured values as null; plots want floats."""
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _get(data: dict[str, Any], *path: str) -> Any:
    """Reports from older versions or cut-short runs may lack any section; treat absence as no data."""
    node: Any = data
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _pairs(rows: Any) -> list[tuple[float, float]]:
    return [(number(r[0]), number(r[1])) for r in rows or [] if isinstance(r, (list, tuple)) and len(r) >= 2]


def _figure(height: float):
    """A figure outside pyplot: no global figure registry to leak into, nothing for a GUI backend to grab."""
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    """No metadata, so the same report always renders the same bytes (the page is diffable and testable)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        fig.clear()
    return buffer.getvalue()


def _spans_decades(values: Iterable[float], decades: float = 2.0) -> bool:
    positive = [v for v in values if math.isfinite(v)]
    if not positive or min(positive) <= 0:
        return False
    return math.log10(max(positive) / min(positive)) > decades


def _finding_steps(data: dict[str, Any]) -> dict[float, list[str]]:
    """Codes by step, so two findings at one step share one line instead of overprinting labels."""
    out: dict[float, list[str]] = {}
    for finding in _get(data, "findings") or []:
        step = number(finding.get("step"))
        if math.isfinite(step) and finding.get("code") not in out.get(step, []):
            out.setdefault(step, []).append(str(finding.get("code")))
    return out


def _top(ax):
    """x in data units, y in axes fraction: for labels pinned to the top or bottom edge at a data x."""
    from matplotlib.transforms import blended_transform_factory

    return blended_transform_factory(ax.transData, ax.transAxes)


def label_groups(steps: dict[float, list[str]], low: float, high: float) -> list[tuple[float, list[str]]]:
    """Findings' steps closer than LABEL_GAP of the x range share one label, at the first step."""
    groups: list[tuple[float, list[str]]] = []
    for step, codes in sorted(steps.items()):
        if groups and step - groups[-1][0] < LABEL_GAP * max(high - low, 1e-9):
            groups[-1][1].extend(c for c in codes if c not in groups[-1][1])
        else:
            groups.append((step, list(codes)))
    return groups


def _mark_findings(ax, data: dict[str, Any]) -> None:
    """A dashed line at each finding's step; the labels, rotated, right of the line (inside the
    axes, so a label at step 0 does not run into the y axis's numbers), merged where close."""
    steps = _finding_steps(data)
    for step in steps:
        ax.axvline(step, color=FLAG_COLOR, linestyle="--", linewidth=1, alpha=0.8)
    for step, codes in label_groups(steps, *ax.get_xlim()):
        ax.text(step, 0.98, ", ".join(codes) + " ", transform=_top(ax), rotation=90, va="top", ha="left",
                fontsize=8, color=FLAG_COLOR, clip_on=True)


def _mark_nonfinite(ax, series: list[tuple[float, float]]) -> bool:
    """A NaN loss cannot be drawn, yet it is the point of the plot: shade from where it started."""
    bad = [s for s, v in series if not math.isfinite(v)]
    if not bad:
        return False
    first, last = min(bad), max(s for s, _ in series)
    ax.axvspan(first, max(last, first + 0.5), color=FLAG_COLOR, alpha=0.08, linewidth=0)
    ax.scatter(bad, [0.03] * len(bad), transform=_top(ax), marker="x", s=12, color=FLAG_COLOR,
               label=f"non-finite from step {first:g} ({len(bad)} steps)", zorder=3, clip_on=False)
    return True


def _series_plot(data: dict[str, Any], metric: str, ylabel: str, sampled: bool = False) -> bytes | None:
    """`sampled`: the training series was measured on some steps only (batch accuracy): markers."""
    train = _pairs(_get(data, "metrics", metric, "train"))
    val = _pairs(_get(data, "metrics", metric, "val_by_step"))
    if not train and not any(math.isfinite(v) for _, v in val):
        return None
    fig = _figure(3.6)
    ax = fig.add_subplot()
    finite = [(s, v) for s, v in train if math.isfinite(v)]
    if finite:  # sampled: markers only, no line through steps that were not measured
        style: dict[str, Any] = {"linestyle": "none", "marker": "o", "markersize": 3} if sampled else {"linewidth": 1.2}
        ax.plot(*zip(*finite, strict=True), color="#2c6fbb", label=f"train {ylabel}" + " (sampled steps)" * sampled,
                **style)
    good_val = [(s, v) for s, v in val if math.isfinite(v)]
    if good_val:
        ax.plot(*zip(*good_val, strict=True), color="#e67e22", marker="o", markersize=4, linewidth=1.2,
                label=f"validation {ylabel}")
    _mark_nonfinite(ax, train)
    if _spans_decades(v for _, v in finite + good_val):
        ax.set_yscale("log")
    _mark_findings(ax, data)
    _integer_steps(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _integer_steps(ax) -> None:
    """Steps are whole numbers; a short run should not get a 0.25-step grid."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def loss_plot(data: dict[str, Any]) -> bytes | None:
    """Training and validation loss against step, with each finding's step marked where it happened."""
    return _series_plot(data, "loss", "loss")


def accuracy_plot(data: dict[str, Any]) -> bytes | None:
    """Accuracy, when the run logged it: a train/validation gap reads more plainly here than in loss."""
    return _series_plot(data, "accuracy", "accuracy", sampled=True)


def _layer_labels(data: dict[str, Any], names: list[str]) -> tuple[list[str], list[bool]]:
    """Tick labels with the layer type ("3 (Linear)" says more than "3"), and which ones a finding flagged."""
    known = {str(layer.get("name")): layer for layer in _get(data, "gradients", "layers") or []}
    labels = [f"{name} ({known[name]['type']})" if known.get(name, {}).get("type") else name for name in names]
    return labels, [bool(known.get(name, {}).get("flagged")) for name in names]


def _style_flagged(ax, labels: list[str], flagged: list[bool]) -> None:
    """Red and bold: the eye should land on the layers a finding named before reading the numbers."""
    ax.set_yticks(range(len(labels)), labels, fontsize=8 if len(labels) <= 40 else 6)
    for tick, hit in zip(ax.get_yticklabels(), flagged, strict=True):
        if hit:
            tick.set_color(FLAG_COLOR)
            tick.set_fontweight("bold")


def _edges(steps: list[float]) -> list[float]:
    """Cell borders halfway between sampled steps: gradient norms are sampled unevenly (dense early)."""
    if len(steps) == 1:
        return [steps[0] - 0.5, steps[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(steps, steps[1:], strict=False)]
    return [steps[0] - (mids[0] - steps[0]), *mids, steps[-1] + (steps[-1] - mids[-1])]


def _log_norms(norms: list[list[Any]], width: int):
    """log10 of each norm; NaN/Inf go to a separate mask, since "gradients broke here" differs from
    "not measured" (null) and from an exact zero."""
    import numpy as np

    values = np.full((len(norms), width), np.nan)
    broken = np.zeros((len(norms), width), dtype=bool)
    for i, row in enumerate(norms):
        for j, raw in enumerate((row or [])[:width]):
            v = number(raw)
            if raw is not None and not math.isfinite(v):
                broken[i, j] = True
            elif v > 0:
                values[i, j] = math.log10(v)
    return values, broken


def gradient_heatmap(data: dict[str, Any]) -> bytes | None:
    """log10 gradient norm per layer and step: vanishing shows as a dark bottom, exploding as a bright column."""
    heat = _get(data, "gradients", "heatmap") or {}
    steps = [number(s) for s in heat.get("steps") or []]
    layers = [str(name) for name in heat.get("layers") or []]
    norms = heat.get("norms") or []
    if not steps or not layers or not norms:
        return None
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    values, broken = _log_norms(norms[: len(layers)], len(steps))
    layers = layers[: len(values)]
    if not np.isfinite(values).any() and not broken.any():
        return None
    fig = _figure(min(12.0, 1.6 + 0.22 * len(layers)))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="#e8e8e8")
    x, y = _edges(steps), np.arange(len(layers) + 1) - 0.5
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(values), cmap=cmap, shading="flat")
    if broken.any():
        ax.pcolormesh(x, y, np.ma.masked_where(~broken, broken.astype(float)), cmap=ListedColormap([FLAG_COLOR]),
                      shading="flat")
        ax.text(1.0, 1.01, "red: NaN/Inf gradient", transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                color=FLAG_COLOR)
    fig.colorbar(mesh, ax=ax, label="log10 gradient norm", pad=0.01)
    _style_flagged(ax, *_layer_labels(data, layers))
    ax.invert_yaxis()  # model order, first layer on top
    _integer_steps(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    return _png(fig)


def update_ratio_plot(data: dict[str, Any]) -> bytes | None:
    """|Δw|/|w| per layer on a log axis against the usual band: a learning rate off by 100x shows at a glance."""
    layers = _get(data, "gradients", "layers") or []
    rows = [(str(layer.get("name")), number(layer.get("update_ratio_median"))) for layer in layers]
    if not any(math.isfinite(v) and v > 0 for _, v in rows):
        return None
    fig = _figure(min(12.0, 1.4 + 0.24 * len(rows)))
    ax = fig.add_subplot()
    low, high = TYPICAL_UPDATE_RATIO
    ax.axvspan(low, high, color="#27ae60", alpha=0.12)
    ax.text(math.sqrt(low * high), 1.01, f"typical ({low:g} to {high:g})", transform=_top(ax), ha="center",
            va="bottom", fontsize=8, color="#1e8449")
    ys = list(range(len(rows)))
    drawn = [(y, v) for y, (_, v) in zip(ys, rows, strict=True) if math.isfinite(v) and v > 0]
    colors = ["#2c6fbb" if low <= v <= high else "#e67e22" for _, v in drawn]
    ax.barh([y for y, _ in drawn], [v for _, v in drawn], color=colors, height=0.7)
    finite = [v for _, v in drawn]
    ax.set_xscale("log")
    ax.set_xlim(min(min(finite), low) / 3, max(max(finite), high) * 3)
    for y, (_, v) in zip(ys, rows, strict=True):
        if not (math.isfinite(v) and v > 0):
            ax.text(ax.get_xlim()[0], y, " n/a", va="center", fontsize=8, color="#777777")
    _style_flagged(ax, *_layer_labels(data, [name for name, _ in rows]))
    ax.invert_yaxis()
    ax.set_xlabel("median update-to-weight ratio |Δw| / |w| per step")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def memory_timeline_plot(data: dict[str, Any]) -> bytes | None:
    """Memory per step in MiB, one line per measured counter: a leak is a slope, a spike is a step."""
    columns = _get(data, "memory", "timeline_columns") or []
    rows = [row for row in _get(data, "memory", "timeline") or [] if isinstance(row, (list, tuple))]
    if "step" not in columns or not rows:
        return None
    at = {name: i for i, name in enumerate(columns)}
    drawn = {label: [(s, v) for s, v in ((number(r[at["step"]]), number(r[at[column]]) / MIB)
                                         for r in rows if len(r) > at[column]) if math.isfinite(s) and math.isfinite(v)]
             for column, label in MEMORY_SERIES.items() if column in at}
    series = {label: points for label, points in drawn.items() if points}
    if not series:
        return None
    leak = MEMORY_SERIES.get(leak_counter(data) or "")
    if leak in series:  # the report names a leak: show the counter it was measured by, at its scale
        return _leak_plot(data, leak, series[leak])
    fig = _figure(3.4)
    ax = fig.add_subplot()
    for label, points in series.items():
        ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None, linewidth=1.2, label=label)
    _integer_steps(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("MiB")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def leak_counter(data: dict[str, Any]) -> str | None:
    """The timeline column (by LEAK_COUNTERS) the memory_leak finding was measured on, or None."""
    leaks = [f for f in _get(data, "findings") or [] if f.get("code") == "memory_leak"]
    return LEAK_COUNTERS.get(str((leaks[0].get("evidence") or {}).get("measured_by"))) if leaks else None


def _leak_plot(data: dict[str, Any], label: str, points: list[tuple[float, float]]) -> bytes:
    """The counter the leak was measured by, alone and as growth since its first sample, in a unit
    that fits the growth: a few KiB a step is invisible on an axis of hundreds of MiB."""
    first, base = points[0]
    growth = [(s, (v - base) * MIB) for s, v in points]
    unit, size = next(((u, n) for u, n in (("GiB", 2**30), ("MiB", MIB), ("KiB", 2**10))
                       if max(abs(g) for _, g in growth) >= 2 * n), ("B", 1))
    fig = _figure(3.4)
    ax = fig.add_subplot()
    ax.plot([s for s, _ in growth], [g / size for _, g in growth], color=FLAG_COLOR, marker="o", markersize=3,
            linewidth=1.0, label=f"{label}: growth since step {first:g} (what memory_leak measured)")
    _integer_steps(ax)
    ax.set(xlabel="step", ylabel=f"{unit} above step {first:g}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def rolled_up_modules(memory: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level children with their subtrees summed (`layer3.1.conv2` counts for `layer3`), in
    forward order: forty BatchNorms say less than "block1 holds half the step"."""
    from ..jsonreport import memory_profile_from

    profile = memory_profile_from(memory)
    if profile is None:
        return []
    rows = []
    for m in profile.top_level():
        label = f"{m.name} (own ops)" if m.name == profile.root else (
            f"{m.name} ({m.type})" if m.type and m.type != m.name else m.name)
        rows.append({"name": m.name, "type": m.type, "label": label, "parameters": float(m.parameters),
                     "gradients": float(m.gradients), "activations": float(m.activations)})
    return rows


def _breakdown_rows(memory: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    step = memory.get("step") or {}
    rows = [(r["label"], {k: r[k] / MIB for k in ("parameters", "gradients", "activations")})
            for r in rolled_up_modules(memory)]
    for key, label, part in (("optimizer_state", "(optimizer state)", "optimizer state"),
                             ("batch", "(input batch)", "input batch")):
        value = number(step.get(key))
        if math.isfinite(value) and value > 0:
            rows.append((label, {part: value / MIB}))
    return rows


def _limit_lines(ax, memory: dict[str, Any], largest: float) -> None:
    """The budget (and the device's capacity when it is in view) as lines the bars can be held against."""
    for key, label, style in (("budget_bytes", "budget", "--"), ("capacity_bytes", "capacity", ":")):
        value = number(memory.get(key)) / MIB
        if math.isfinite(value) and value <= largest * 3:
            ax.axvline(value, color=FLAG_COLOR, linestyle=style, linewidth=1.2, label=f"{label} {value:.4g} MiB")


def memory_breakdown_plot(data: dict[str, Any]) -> bytes | None:
    """Where one training step's memory goes, per top-level module, stacked by kind, with the whole
    step's estimated peak on top so it can be held against the budget."""
    memory = _get(data, "memory") or {}
    rows = _breakdown_rows(memory)
    named = {str(f.get("where")).split(".")[0] for f in _get(data, "findings") or [] if f.get("where")}
    step = memory.get("step") or {}
    peak = number(step.get("estimated_peak")) / MIB
    if math.isfinite(peak) and peak > 0:
        rows.insert(0, ("whole step (estimated peak)", {
            kind: number(step.get(key)) / MIB
            for kind, key in (("parameters", "parameters"), ("gradients", "gradients"),
                              ("optimizer state", "optimizer_state"), ("activations", "activations"),
                              ("input batch", "batch"))
        }))
    if not rows:
        return None
    fig = _figure(min(12.0, 1.6 + 0.3 * len(rows)))
    ax = fig.add_subplot()
    kinds = {"parameters": "#2c6fbb", "gradients": "#8e44ad", "optimizer state": "#7f8c8d", "activations": "#e67e22",
             "input batch": "#f1c40f"}
    left = [0.0] * len(rows)
    for kind, color in kinds.items():
        widths = [parts.get(kind, 0.0) if math.isfinite(parts.get(kind, 0.0)) else 0.0 for _, parts in rows]
        if any(widths):
            ax.barh(range(len(rows)), widths, left=left, color=color, height=0.7, label=kind)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    _limit_lines(ax, memory, max(left))
    _style_flagged(ax, [name for name, _ in rows], [name.split(" ")[0] in named for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("MiB")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
