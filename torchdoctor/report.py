"""A finished diagnosis: the run, its findings, and the series the reports are drawn from."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .findings import Finding, Severity
from .timeline import EvalPass, Timeline

SCHEMA = "torchdoctor.report/1"
MAX_SERIES_POINTS = 2000
TREND_POINTS = 16  # the sparkline of a layer's gradient norm
HEATMAP_STEPS = 200
GRADIENT_CODES = frozenset({"exploding_gradients", "vanishing_gradients", "nonfinite_gradient"})


def _downsample(points: list[Any], limit: int = MAX_SERIES_POINTS) -> list[Any]:
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    picked = points[::stride]
    if picked[-1] is not points[-1]:
        picked.append(points[-1])
    return picked


def _when(ev: EvalPass) -> int:
    """The x of a validation point: its epoch (as the contract has it), or the step when epochs are unknown."""
    return ev.epoch if ev.epoch is not None else ev.step


def _json_float(value: float | None) -> float | str | None:
    """JSON has no NaN/Inf; keep them readable as strings."""
    if value is None:
        return None
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


@dataclass
class Report:
    timeline: Timeline
    findings: list[Finding] = field(default_factory=list)
    not_evaluated: dict[str, str] = field(default_factory=dict)
    internal_errors: list[str] = field(default_factory=list)

    saved: dict[str, Any] | None = None  # the JSON this report was read back from, if it was

    @property
    def step_count(self) -> int:
        if self.saved is not None:
            return int(self.saved.get("run", {}).get("steps") or len(self.timeline.steps))
        return len(self.timeline.steps)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A saved JSON report, read back for the terminal and HTML renderers. The timeline holds
        what the JSON keeps (the series, evaluations, the memory breakdown), not every step."""
        from .readback import findings_from, timeline_from

        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a torchdoctor report (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        return cls(timeline=timeline_from(data), findings=findings_from(data),
                   not_evaluated=dict(data.get("not_evaluated") or {}),
                   internal_errors=list(data.get("internal_errors") or []), saved=data)

    @property
    def healthy(self) -> bool:
        return not any(f.severity >= Severity.WARNING for f in self.findings)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def by_code(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def fails(self, threshold: Severity | None) -> bool:
        return threshold is not None and any(f.severity >= threshold for f in self.findings)

    # -- JSON --------------------------------------------------------------------
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
                "trend": [v for _, v in _downsample(list(enumerate(every)), TREND_POINTS)],
                "flagged": flags.get(layer.name, []),
            })
        return out

    def gradient_heatmap(self, limit: int = HEATMAP_STEPS) -> dict[str, Any]:
        """Layer x step gradient norms, at most `limit` steps evenly spread (None: not measured)."""
        tl = self.timeline
        records = _downsample([r for r in tl.steps if r.layer_grad_norms], limit)
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
            "timeline": _downsample([[m.step, m.rss, m.heap, m.allocated, m.reserved] for m in mem.samples]),
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

    def to_dict(self) -> dict[str, Any]:
        if self.saved is not None:
            return self.saved
        tl = self.timeline
        run = tl.run
        loss = [[s, _json_float(v)] for s, v in tl.loss_series()]
        grad = [[r.step, _json_float(r.grad_norm)] for r in tl.steps if r.grad_norm is not None]
        val = tl.validation()
        return {
            "schema": SCHEMA,
            "torchdoctor_version": __version__,
            "run": {
                "argv": run.argv,
                "exit_status": run.exit_status,
                "duration_s": round(run.duration_s, 3) if run.duration_s is not None else None,
                "torch_version": run.torch_version,
                "device": run.device,
                "world_size": run.world_size,
                "steps": len(tl.steps),
                "epochs": run.epochs,
                "models": [m.name for m in tl.models],
                "module_types": {k: v for m in tl.models for k, v in m.module_types.items()},
                "optimizers": tl.optimizers,
                "backward_calls": tl.backward_calls,
                "compiled": bool(tl.events_of("compiled")),
            },
            "findings": [_jsonable(f.to_dict()) for f in self.findings],
            "not_evaluated": self.not_evaluated,
            "internal_errors": self.internal_errors,
            "metrics": _jsonable({
                "loss": {"train": _downsample(loss), "val": [[_when(e), e.loss] for e in val],
                         "val_by_step": [[e.step, e.loss] for e in val]},
                "accuracy": {
                    "train": _downsample([[r.step, r.accuracy] for r in tl.steps if r.accuracy is not None]),
                    "val": [[_when(e), e.accuracy] for e in val if e.accuracy is not None],
                    "val_by_step": [[e.step, e.accuracy] for e in val if e.accuracy is not None],
                },
                "grad_norm": _downsample(grad),
                "update_ratio": _downsample([[r.step, r.update_ratio] for r in tl.steps if r.update_ratio is not None]),
                "lr": _downsample([[r.step, r.lr] for r in tl.steps if r.lr is not None]),
                "evaluations": [asdict(e) for e in tl.evaluations],
            }),
            "gradients": _jsonable({"layers": self.gradient_summary(), "heatmap": self.gradient_heatmap()}),
            "memory": _jsonable(self.memory_summary()),
        }

    def save_json(self, path: str | Path) -> None:
        import json

        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    # -- terminal -------------------------------------------------------------------
    def render(self, console: Any = None, verbose: bool = False, memory: bool = False,
               findings: bool = True, gradients: bool = False) -> None:
        from .render.terminal import default_console, render_report

        console = console or default_console()
        if findings:
            render_report(self, console=console, verbose=verbose)
        if gradients:
            from .render.gradients import render_gradients

            render_gradients(self, console=console, verbose=verbose)
        if memory:
            from .render.memory import render_memory

            render_memory(self, console=console, verbose=verbose)

    def to_text(self, width: int = 100) -> str:
        import io

        from rich.console import Console

        buf = io.StringIO()
        self.render(Console(file=buf, width=width, color_system=None, force_terminal=False))
        return buf.getvalue()


def _fragmentation(samples: list[Any]) -> int | None:
    """CUDA memory reserved by the caching allocator but not allocated, at the most recent sample."""
    for sample in reversed(samples):
        if sample.reserved is not None and sample.allocated is not None:
            return sample.reserved - sample.allocated
    return None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return _json_float(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
