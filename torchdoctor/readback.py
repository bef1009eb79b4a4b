"""A saved JSON report turned back into findings and a timeline, for `torchdoctor report RUN.json`.

Only what the JSON keeps comes back: the loss and gradient-norm series, the evaluations, the
layers, the memory breakdown and timeline. Enough for every renderer; rules are not re-run.
"""

from __future__ import annotations

import math
from typing import Any

from .findings import Finding, Fix, Severity
from .timeline import (
    EvalPass,
    LayerInfo,
    MemoryProfile,
    MemorySample,
    ModelInfo,
    ModuleMemory,
    RunInfo,
    StepRecord,
    Timeline,
)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(value)
    return float(value)


def findings_from(data: dict[str, Any]) -> list[Finding]:
    out = []
    for f in data.get("findings") or []:
        out.append(Finding(
            code=f["code"], severity=Severity.parse(f["severity"]), title=f.get("title", ""),
            step=f.get("step"), epoch=f.get("epoch"), where=f.get("where"), evidence=dict(f.get("evidence") or {}),
            fixes=[Fix(x["action"], x.get("text", ""), dict(x.get("params") or {}), x.get("snippet"))
                   for x in f.get("fixes") or []],
        ))
    return out


def timeline_from(data: dict[str, Any]) -> Timeline:
    run = data.get("run") or {}
    tl = Timeline(run=RunInfo(
        argv=list(run.get("argv") or []), exit_status=run.get("exit_status"), duration_s=run.get("duration_s"),
        torch_version=run.get("torch_version", ""), device=run.get("device", "cpu"),
        world_size=run.get("world_size", 1), epochs=run.get("epochs"),
    ))
    names = list(run.get("models") or [])
    tl.models = [ModelInfo(names[0] if names else "model", dict(run.get("module_types") or {}), 0, 0)]
    tl.optimizers = list(run.get("optimizers") or [])
    tl.backward_calls = run.get("backward_calls") or 0
    metrics = data.get("metrics") or {}
    steps: dict[int, StepRecord] = {}
    for step, value in metrics.get("loss", {}).get("train") or []:
        steps.setdefault(step, StepRecord(step)).loss = _float(value)
    for step, value in metrics.get("grad_norm") or []:
        steps.setdefault(step, StepRecord(step)).grad_norm = _float(value)
    tl.steps = [steps[k] for k in sorted(steps)]
    tl.evaluations = [EvalPass(**{k: v for k, v in e.items() if k in EvalPass.__dataclass_fields__})
                      for e in metrics.get("evaluations") or []]
    for e in tl.evaluations:
        e.loss = _float(e.loss)
    tl.layers = [LayerInfo(x["name"], x.get("type", ""), [], x.get("numel", 0), x.get("kind", "other"))
                 for x in (data.get("gradients") or {}).get("layers") or []]
    _memory_from(tl, data.get("memory") or {})
    return tl


def _memory_from(tl: Timeline, memory: dict[str, Any]) -> None:
    mem = tl.memory
    mem.device = memory.get("device", tl.run.device)
    mem.capacity, mem.budget = memory.get("capacity_bytes"), memory.get("budget_bytes")
    mem.peak_rss = memory.get("peak_rss_bytes")
    mem.peak_allocated, mem.peak_reserved = memory.get("peak_allocated_bytes"), memory.get("peak_reserved_bytes")
    columns = memory.get("timeline_columns") or []
    for row in memory.get("timeline") or []:
        values = dict(zip(columns, row, strict=False))
        mem.samples.append(MemorySample(step=values.get("step", 0), rss=values.get("rss_bytes"),
                                        heap=values.get("heap_bytes"), allocated=values.get("allocated_bytes"),
                                        reserved=values.get("reserved_bytes")))
    mem.profile = memory_profile_from(memory)


def memory_profile_from(memory: dict[str, Any]) -> MemoryProfile | None:
    """The measured step's breakdown in a report's `memory` section (None when none was measured)."""
    step = memory.get("step")
    if not step:
        return None
    return MemoryProfile(
        step=step.get("measured_at_step", 0), root=step.get("root", ""), batch_size=step.get("batch_size"),
        parameters=step.get("parameters", 0), gradients=step.get("gradients", 0),
        gradients_in_forward=step.get("gradients_in_forward", 0),
        optimizer_state=step.get("optimizer_state", 0), activations=step.get("activations", 0),
        batch=step.get("batch", 0), activation_dtypes=dict(step.get("activation_dtypes") or {}),
        modules=[ModuleMemory(m["name"], m.get("type", ""), m.get("parameters", 0), m.get("gradients", 0),
                              m.get("activations", 0), m.get("input_bytes", 0))
                 for m in memory.get("modules") or []],
    )
