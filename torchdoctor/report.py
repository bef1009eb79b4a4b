"""A finished diagnosis: the run, its findings, and the series the reports are drawn from.

Data only: showing it is render/'s job (render.render, render.to_text), writing and reading it as
JSON is jsonreport's. Nothing here imports either, so neither can import back into a circle.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from .findings import Finding, Severity
from .rules.ranks import has_failed
from .timeline import Timeline

MAX_SERIES_POINTS = 2000
TREND_POINTS = 16  # the sparkline of a layer's gradient norm
HEATMAP_STEPS = 200
GRADIENT_CODES = frozenset({"exploding_gradients", "vanishing_gradients", "nonfinite_gradient"})
# Fewer steps than this and the trend rules (memory_leak needs 20 steps, divergence 30 losses,
# loss_plateau 50) could not judge: no problem found is then no evidence of health.
MIN_JUDGED_STEPS = 20
T = TypeVar("T")


def downsample(points: list[Any], limit: int = MAX_SERIES_POINTS) -> list[Any]:
    """At most about `limit` evenly spaced points, the last one always kept: a long run's series
    stay small in the JSON and in the plots."""
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    picked = points[::stride]
    if picked[-1] is not points[-1]:
        picked.append(points[-1])
    return picked


def is_problem(severity: Severity) -> bool:
    """What keeps a run from being called healthy: a finding at warning or above. The one place
    that says so, for Report.healthy, the terminal report and the HTML banner alike."""
    return severity >= Severity.WARNING


def interruption(exception: BaseException | None) -> str | None:
    """How a run was cut short, for RunInfo.interrupted: Ctrl-C (KeyboardInterrupt) or SIGTERM
    (execfile.terminated_as_exit turns it into SystemExit(143)); None for a run that ended itself."""
    if isinstance(exception, KeyboardInterrupt):
        return "Ctrl-C"
    if isinstance(exception, SystemExit) and exception.code == 143:
        return "SIGTERM"
    return None


def caveat(steps: int, interrupted: str | None) -> str | None:
    """Why a run with no problem found is still not called healthy, or None when it may be: the
    one wording for the terminal and the HTML banner alike."""
    if interrupted:
        return f"interrupted at step {steps} ({interrupted}): judged on {steps} steps"
    if 0 < steps < MIN_JUDGED_STEPS:
        return f"judged on {steps} steps: too few to call it healthy"
    return None


# Info findings shown unasked: what --heal did to the run is never silent.
ALWAYS_SHOWN = frozenset({"healed"})


def default_view(findings: Sequence[T], severity: Callable[[T], Severity | None], code: Callable[[T], Any],
                 caused_by: Callable[[T], Any]) -> tuple[list[T], list[T]]:
    """(shown, hidden): what both the terminal and the HTML show unasked, and what only -v (or the
    HTML's toggle) shows. Shown: the problems (is_problem) and the causes they name, even an info
    one, and what --heal did (ALWAYS_SHOWN); hidden: every other finding (info findings on their
    own) with the findings it answered (lowered to info by rules/healed.settle, evidence
    `healed_in_flight`). Works on Findings and on the JSON's finding dicts, so a saved report is
    shown as the live one was."""
    keep = {id(f) for f in findings if code(f) in ALWAYS_SHOWN or _healed_in_flight(f)}
    for f in findings:
        level = severity(f)
        if level is None or not is_problem(level) or id(f) in keep:
            continue
        keep.add(id(f))
        cause = cause_in(findings, f, code, caused_by)
        while cause is not None and id(cause) not in keep:
            keep.add(id(cause))
            cause = cause_in(findings, cause, code, caused_by)
    return [f for f in findings if id(f) in keep], [f for f in findings if id(f) not in keep]


def _healed_in_flight(finding: Any) -> bool:
    evidence = finding.get("evidence") if isinstance(finding, dict) else getattr(finding, "evidence", None)
    return isinstance(evidence, dict) and bool(evidence.get("healed_in_flight"))


def saved_view(findings: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """default_view of the JSON's finding dicts, for the renderers that draw from a saved report."""
    labels = {s.label: s for s in Severity}
    return default_view(findings, lambda f: labels.get(f.get("severity")), lambda f: f.get("code"),
                        lambda f: f.get("caused_by"))


def count_line(problems: int, worst: str | None, shown: int, hidden: int, reveal: str) -> str | None:
    """What the findings add up to, counted by kind: "2 problems found (worst: error), with 1 info
    finding; 1 more info finding, not a problem (-v shows it)": `shown` findings are on screen
    (problems first among them), `hidden` ones are not. None when there is nothing to count."""
    def n(count: int, what: str) -> str:
        return f"{count} {what}{'s' if count != 1 else ''}"

    parts = []
    if problems:
        parts.append(f"{n(problems, 'problem')} found (worst: {worst})")
        if shown > problems:
            parts[-1] += f", with {n(shown - problems, 'info finding')}"
    elif shown:
        parts.append(f"{n(shown, 'info finding')}, not a problem")
    if hidden:
        more = "more " if problems else ""
        parts.append(f"{hidden} {more}info finding{'s' if hidden != 1 else ''}, not a problem ({reveal})")
    return "; ".join(parts) or None


@dataclass
class Report:
    """What a run's diagnosis leaves: the timeline, the findings, what could not be judged, and the
    summaries every renderer draws from (so the terminal, the JSON and the HTML agree)."""

    timeline: Timeline
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: dict[str, str] = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)

    saved: dict[str, Any] | None = None  # the JSON this report was read back from, if it was
    # A multi-process run: how each rank ended (rank, status, exit_status, exception, steps, findings,
    # host), as rank 0 gathered them; None for a single-process run.
    ranks: list[dict[str, Any]] | None = None

    @property
    def step_count(self) -> int:
        if self.saved is not None:
            return int(self.saved.get("run", {}).get("steps") or len(self.timeline.steps))
        return len(self.timeline.steps)

    @property
    def healthy(self) -> bool:
        return not self.problems()

    def problems(self) -> list[Finding]:
        """The findings that keep the run from being called healthy, in report order."""
        return [f for f in self.findings if is_problem(f.severity)]

    def cause_of(self, finding: Finding) -> Finding | None:
        """The finding `caused_by` names: the nearest one of that code listed before it (linking
        lists each cause before what it explains), else any of that code; None when unlinked."""
        return cause_in(self.findings, finding, lambda f: f.code, lambda f: f.caused_by)

    def leading(self, shown: list[Finding]) -> list[Finding]:
        """`shown` with the causes they name, in report order: a problem is never shown without
        the finding that explains it, even when that cause alone would not be (an info finding)."""
        keep = {id(f) for f in shown}
        for f in shown:
            cause = self.cause_of(f)
            while cause is not None and id(cause) not in keep:
                keep.add(id(cause))
                cause = self.cause_of(cause)
        return [f for f in self.findings if id(f) in keep]

    @property
    def interrupted(self) -> str | None:
        return self.timeline.run.interrupted

    def caveat(self) -> str | None:
        """Why this run is not called healthy although nothing was found (see `caveat`)."""
        return caveat(self.step_count, self.interrupted)

    def default_view(self) -> tuple[list[Finding], list[Finding]]:
        """(shown, hidden) findings, by the one rule for every renderer (see `default_view`)."""
        return default_view(self.findings, lambda f: f.severity, lambda f: f.code, lambda f: f.caused_by)

    def count_line(self, reveal: str = "-v shows it", verbose: bool = False) -> str | None:
        shown, hidden = self.default_view()
        if verbose:
            shown, hidden = self.findings, []
        problems = self.problems()
        worst = max((f.severity for f in problems), default=None)
        return count_line(len(problems), worst.label if worst is not None else None, len(shown), len(hidden), reveal)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def by_code(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def failed_ranks(self) -> list[int]:
        """The ranks of a multi-process run that failed (rules.ranks.has_failed says what failing
        is): the JSON's `run.failed_ranks`, and what turns the ranks line red. Empty for one process."""
        return [e["rank"] for e in self.ranks or [] if has_failed(e["status"], e["exit_status"])]

    def fails(self, threshold: Severity | None) -> bool:
        return threshold is not None and any(f.severity >= threshold for f in self.findings)

    def layer_flags(self) -> dict[str, list[str]]:
        """The layers each gradient finding names, so the gradient report can make them stand out."""
        flags: dict[str, list[str]] = {}
        names = {layer.name for layer in self.timeline.layers}
        param_layer = {p: layer.name for layer in self.timeline.layers for p in layer.params}
        for f in self.findings:
            if f.code not in GRADIENT_CODES:
                continue
            named = set(f.evidence.get("layers_below_threshold") or [])
            named |= {x["layer"] for x in f.evidence.get("largest_layers") or [] if isinstance(x, dict)}
            named |= {param_layer[p] for p in f.evidence.get("params") or [] if p in param_layer}
            if f.where in names:
                named.add(f.where)
            for name in named:
                flags.setdefault(name, []).append(f.code)
        return flags

    def gradient_summary(self) -> list[dict[str, Any]]:
        """Per layer, in model order: gradient norm (last, median, max), the update-to-weight
        ratio, the share of steps whose gradient was not finite, a short trend, and the findings
        that name it."""
        if self.saved is not None:
            return list(self.saved.get("gradients", {}).get("layers") or [])
        tl = self.timeline
        flags = self.layer_flags()
        out = []
        for index, layer in enumerate(tl.layers):
            series = [v for _, v in tl.layer_series(index)]
            measured = nonfinite = 0
            ratios, every = [], []
            for r in tl.steps:
                norms = r.layer_grad_norms
                if norms and index < len(norms) and norms[index] is not None:
                    measured += 1
                    every.append(norms[index])
                    nonfinite += not math.isfinite(norms[index])
                updates = r.layer_update_ratios
                if updates and index < len(updates) and updates[index] is not None and math.isfinite(updates[index]):
                    ratios.append(updates[index])
            out.append({
                "name": layer.name,
                "type": layer.type,
                "kind": layer.kind,
                "numel": layer.numel,
                "norm_last": series[-1] if series else None,
                "norm_median": statistics.median(series) if series else None,
                "norm_max": max(series) if series else None,
                "nonfinite_steps": nonfinite,
                "nonfinite_share": nonfinite / measured if measured else None,
                "update_ratio_median": statistics.median(ratios) if ratios else None,
                "trend": [v for _, v in downsample(list(enumerate(every)), TREND_POINTS)],
                "flagged": flags.get(layer.name, []),
            })
        return out

    def gradient_heatmap(self, limit: int = HEATMAP_STEPS) -> dict[str, Any]:
        """Layer x step gradient norms, at most `limit` steps evenly spread (None: not measured)."""
        tl = self.timeline
        records = downsample([r for r in tl.steps if r.layer_grad_norms], limit)
        layers = len(tl.layers)
        return {
            "steps": [r.step for r in records],
            "layers": [layer.name for layer in tl.layers],
            "norms": [[(r.layer_grad_norms[i] if i < len(r.layer_grad_norms) else None) for r in records]
                      for i in range(layers)],
        }

    def memory_summary(self) -> dict[str, Any]:
        """The memory report's data: the run's peaks, one measured step's breakdown (per module),
        and the timeline of the process's memory."""
        if self.saved is not None and "memory" in self.saved:
            return dict(self.saved["memory"])
        mem = self.timeline.memory
        profile = mem.profile
        out: dict[str, Any] = {
            "device": mem.device,
            "capacity_bytes": mem.capacity,
            "budget_bytes": mem.budget,
            "peak_rss_bytes": mem.peak_rss,
            "peak_allocated_bytes": mem.peak_allocated,
            "peak_reserved_bytes": mem.peak_reserved,
            "fragmentation_bytes": _fragmentation(mem.samples),
            "retain_graph_calls": mem.retain_graph_calls,
            "step": None,
            "modules": [],
            "timeline": downsample([[m.step, m.rss, m.heap, m.allocated, m.reserved] for m in mem.samples]),
            "timeline_columns": ["step", "rss_bytes", "heap_bytes", "allocated_bytes", "reserved_bytes"],
        }
        if profile is None:
            return out
        total = profile.step_total
        out["step"] = {
            "measured_at_step": profile.step,
            "root": profile.root,
            "batch_size": profile.batch_size,
            "parameters": profile.parameters,
            "gradients": profile.gradients,
            "gradients_in_forward": profile.gradients_in_forward,
            "optimizer_state": profile.optimizer_state,
            "activations": profile.activations,
            "batch": profile.batch,
            "estimated_peak": total,
            "per_sample": profile.per_sample,
            "activation_dtypes": profile.activation_dtypes,
        }
        out["modules"] = [
            {**asdict(m), "share_of_peak": (m.parameters + m.gradients + m.activations) / total if total else None}
            for m in profile.modules
        ]
        return out


def cause_in(findings: Sequence[T], finding: T, code: Callable[[T], Any], caused_by: Callable[[T], Any]) -> T | None:
    """The cause `finding` names among `findings` (Findings, or the JSON's finding dicts): the
    nearest one of that code before it, else the first of that code after it; never itself."""
    wanted = caused_by(finding)
    if not wanted:
        return None
    position = next((i for i, f in enumerate(findings) if f is finding), len(findings))
    before = [f for f in findings[:position] if code(f) == wanted]
    if before:
        return before[-1]
    return next((f for f in findings[position + 1:] if code(f) == wanted), None)


def _fragmentation(samples: list[Any]) -> int | None:
    """CUDA memory reserved by the caching allocator but not allocated, at the most recent sample."""
    for sample in reversed(samples):
        if sample.reserved is not None and sample.allocated is not None:
            return sample.reserved - sample.allocated
    return None

