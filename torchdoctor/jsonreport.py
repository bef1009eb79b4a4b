"""The JSON report (schema torchdoctor.report/1), written and read back in this one module.

Writing: `to_dict` / `write` turn a Report into the contract's JSON (docs/findings.md). JSON has no
NaN or Inf, so they are written as the strings "nan", "inf", "-inf" and the file stays strict.

Reading: `from_dict` turns a saved report back into a Report, for `torchdoctor report RUN.json`.
Only what the JSON keeps comes back: the loss and gradient-norm series, the evaluations, the
layers, the memory breakdown and timeline, how each rank ended. Enough for every renderer; rules
are not re-run, and the read-back report keeps the JSON it came from (`Report.saved`), so it is
written out again unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import __version__
from .findings import Finding, Fix, Severity
from .report import Report, downsample, is_problem
from .timeline import (
    EvalPass,
    LayerInfo,
    LossPrior,
    MemoryProfile,
    MemorySample,
    ModelInfo,
    ModuleMemory,
    Phase,
    RunInfo,
    StepRecord,
    Timeline,
)

SCHEMA = "torchdoctor.report/1"
SEVERITY_LABELS = {s.label: s for s in Severity}


# -- writing ------------------------------------------------------------------------------------


def to_dict(report: Report) -> dict[str, Any]:
    """The report as the contract's JSON; a report read back from JSON gives back that JSON."""
    if report.saved is not None:
        return report.saved
    tl = report.timeline
    run = tl.run
    loss = [[s, json_float(v)] for s, v in tl.loss_series()]
    grad = [[r.step, json_float(r.grad_norm)] for r in tl.steps if r.grad_norm is not None]
    val = tl.validation()
    data = {
        "schema": SCHEMA,
        "torchdoctor_version": __version__,
        "run": {
            "argv": run.argv,
            "exit_status": run.exit_status,
            "interrupted": run.interrupted,
            "duration_s": round(run.duration_s, 3) if run.duration_s is not None else None,
            "torch_version": run.torch_version,
            "device": run.device,
            "world_size": run.world_size,
            "steps": len(tl.steps),
            "epochs": run.epochs,
            "task": tl.task,
            "models": [m.name for m in tl.models],
            "module_types": {k: v for m in tl.models for k, v in m.module_types.items()},
            "optimizers": tl.optimizers,
            "backward_calls": tl.backward_calls,
            "compiled": bool(tl.events_of("compiled")),
            "machine": {"cpu_count": run.cpu_count, "ram_bytes": run.ram_bytes},
            "prior": dataclasses.asdict(tl.prior) if tl.prior is not None else None,
            "phases": [[phase.step, phase.reason] for phase in tl.phases()],
        },
        "findings": [jsonable(f.to_dict()) for f in report.findings],
        "not_evaluated": report.not_evaluated,
        "internal_errors": report.internal_errors,
        "metrics": jsonable({
            "loss": {"train": downsample(loss), "val": [[_when(e), e.loss] for e in val],
                     "val_by_step": [[e.step, e.loss] for e in val],
                     # one curve per loss part (a detector's) and per model (a GAN's)
                     "terms": {name: downsample([list(p) for p in series])
                               for name, series in tl.term_series().items()},
                     "models": {name: downsample([list(p) for p in series])
                                for name, series in tl.model_loss_series().items()}},
            "accuracy": {
                "train": downsample([[r.step, r.accuracy] for r in tl.steps if r.accuracy is not None]),
                "val": [[_when(e), e.accuracy] for e in val if e.accuracy is not None],
                "val_by_step": [[e.step, e.accuracy] for e in val if e.accuracy is not None],
            },
            "iou": {"val": [[_when(e), e.iou] for e in val if e.iou is not None],
                    "val_by_step": [[e.step, e.iou] for e in val if e.iou is not None]},
            "diversity": [list(p) for p in tl.roles.diversity],
            "roles": {"generator": tl.roles.generator, "discriminator": tl.roles.discriminator},
            "grad_norm": downsample(grad),
            "update_ratio": downsample([[r.step, r.update_ratio] for r in tl.steps if r.update_ratio is not None]),
            "lr": downsample([[r.step, r.lr] for r in tl.steps if r.lr is not None]),
            "evaluations": [asdict(e) for e in tl.evaluations],
        }),
        "gradients": jsonable({"layers": report.gradient_summary(), "heatmap": report.gradient_heatmap()}),
        "memory": jsonable(report.memory_summary()),
    }
    if report.ranks is not None:  # a multi-process run: how each rank ended, and which failed
        data["run"]["ranks"] = jsonable(report.ranks)
        data["run"]["failed_ranks"] = report.failed_ranks()
    return data


def write(report: Report, path: str | Path) -> None:
    """Strict JSON (no NaN literals), indented, one trailing newline."""
    Path(path).write_text(json.dumps(to_dict(report), indent=2, allow_nan=False) + "\n")


def json_float(value: float | None) -> float | str | None:
    """JSON has no NaN/Inf; keep them readable as strings."""
    if value is None:
        return None
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return value


def jsonable(obj: Any) -> Any:
    """`obj` with every float JSON can hold (NaN/Inf as strings) and every key a string."""
    if isinstance(obj, float):
        return json_float(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def _when(ev: EvalPass) -> int:
    """The x of a validation point: its epoch (as the contract has it), or the step when epochs are unknown."""
    return ev.epoch if ev.epoch is not None else ev.step


# -- reading ------------------------------------------------------------------------------------


def from_dict(data: dict[str, Any]) -> Report:
    """A saved JSON report, read back for the terminal and HTML renderers. The timeline holds
    what the JSON keeps (the series, evaluations, the memory breakdown), not every step."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"not a torchdoctor report (schema {data.get('schema')!r}, expected {SCHEMA!r})")
    return Report(timeline=_timeline_from(data), findings=_findings_from(data),
                  not_evaluated=dict(data.get("not_evaluated") or {}),
                  internal_errors=list(data.get("internal_errors") or []), saved=data,
                  ranks=_ranks_from(data))


def saved_problems(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The saved findings that keep the run from being called healthy (report.is_problem decides),
    for the renderers that draw from the JSON alone; a severity the contract does not name is none."""
    out = []
    for f in data.get("findings") or []:
        severity = SEVERITY_LABELS.get(f.get("severity"))
        if severity is not None and is_problem(severity):
            out.append(f)
    return out


def _float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(value)
    return float(value)


def _findings_from(data: dict[str, Any]) -> list[Finding]:
    out = []
    for f in data.get("findings") or []:
        out.append(Finding(
            code=f["code"], severity=Severity.parse(f["severity"]), title=f.get("title", ""),
            step=f.get("step"), epoch=f.get("epoch"), where=f.get("where"), evidence=dict(f.get("evidence") or {}),
            fixes=[Fix(x["action"], x.get("text", ""), dict(x.get("params") or {}), x.get("snippet"),
                       dict(x["location"]) if x.get("location") else None)
                   for x in f.get("fixes") or []],
            caused_by=f.get("caused_by"), cause_reason=f.get("cause_reason"),
        ))
    return out


def _ranks_from(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """How each rank ended, for the ranks line; None for a single-process run. An entry needs its
    rank and status; the exit status and exception default to unknown."""
    ranks = (data.get("run") or {}).get("ranks")
    if ranks is None:
        return None
    if not isinstance(ranks, list) or not all(isinstance(e, dict) and "rank" in e and "status" in e for e in ranks):
        raise ValueError("run.ranks is not a list of ranks (each with its rank and status)")
    return [{"exit_status": None, "exception": None, **e} for e in ranks]


def _timeline_from(data: dict[str, Any]) -> Timeline:
    run = data.get("run") or {}
    tl = Timeline(run=RunInfo(
        argv=list(run.get("argv") or []), exit_status=run.get("exit_status"), duration_s=run.get("duration_s"),
        torch_version=run.get("torch_version", ""), device=run.get("device", "cpu"),
        world_size=run.get("world_size", 1), epochs=run.get("epochs"),
        cpu_count=(run.get("machine") or {}).get("cpu_count"), ram_bytes=(run.get("machine") or {}).get("ram_bytes"),
        interrupted=run.get("interrupted"), task=run.get("task"),
    ))
    prior = run.get("prior")
    tl.prior = LossPrior(**prior) if isinstance(prior, dict) else None
    tl.phase_starts = [Phase(step, reason) for step, reason in run.get("phases") or [] if reason != "lr_restart"
                       and step > 0]
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
    loss_metrics = metrics.get("loss") or {}
    for field_name, key in (("terms", "terms"), ("model_losses", "models")):
        for name, series in (loss_metrics.get(key) or {}).items():
            for step, value in series:
                record = steps.setdefault(step, StepRecord(step))
                parts = getattr(record, field_name) or {}
                parts[name] = _float(value)
                setattr(record, field_name, parts)
    roles = metrics.get("roles") or {}
    tl.roles.generator, tl.roles.discriminator = roles.get("generator"), roles.get("discriminator")
    tl.roles.diversity = [(step, _float(v)) for step, v in metrics.get("diversity") or []]
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
