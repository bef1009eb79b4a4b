"""A watch started while another is active joins it (`torchdoctor.watch()` or `fit()` in a script
run with `torchdoctor run`, or two watches nested in code): what the joined watch needs of the
outer doctor, which keeps the only probes and the only recorder.

Nothing here may raise into the user's code: a failure is recorded as an internal error and the
joined watch still gets a report.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from .config import Config
from .probes.modules import ModuleProbe
from .probes.process import peak_rss
from .recorder import Recorder
from .report import Report


def note_models(recorder: Recorder, probes: list[Any], models: list[torch.nn.Module]) -> None:
    """Make sure the outer doctor watches the models the inner watch was given, where it discovers
    models (given models of its own, it watches those alone, as it was told). Before discovery has
    settled, the global hooks find them on their first call; after, the module probe watches only
    the roots it found, so a model first seen now is added to them."""
    try:
        if recorder.models.explicit is not None or not models:
            return
        probe = next((p for p in probes if isinstance(p, ModuleProbe)), None)
        if probe is None:
            return
        for model in models:
            if isinstance(model, torch.nn.Module) and recorder.models.root_state(model, recorder.step) is not None:
                probe.watch_root(model)  # a model without parameters is no model to watch
    except Exception as exc:
        recorder.internal_error(f"nested watch: could not add its models: {type(exc).__name__}: {exc}", exc)


def snapshot(recorder: Recorder, config: Config, started: float, exit_status: int | None,
             exception: BaseException | None) -> Report:
    """The diagnosis of what `recorder` holds now, on a copy of its timeline: the outer doctor goes
    on recording and is neither stopped nor finalized (so a last evaluation pass still on the
    device is not in it yet)."""
    live = recorder.timeline
    try:
        timeline = copy.deepcopy(live)
    except Exception as exc:
        recorder.internal_error(f"nested watch: could not copy the timeline: {type(exc).__name__}: {exc}", exc)
        timeline = live
    try:
        from .rules import evaluate

        if timeline is not live:
            run = timeline.run
            run.duration_s = time.perf_counter() - started
            run.exit_status = exit_status
            if exception is not None:
                run.script_exception = f"{type(exception).__name__}: {exception}"
            if recorder.loaders.train_loader is not None:
                run.epochs = recorder.loaders.epochs_seen
            timeline.memory.peak_rss = peak_rss()
            timeline.memory.budget = config.memory_budget
        result = evaluate(timeline, config)
        return Report(timeline=timeline, findings=result.findings, not_evaluated=result.not_evaluated,
                      internal_errors=list(timeline.internal_errors) + result.internal_errors)
    except Exception as exc:
        message = f"nested watch: could not diagnose: {type(exc).__name__}: {exc}"
        recorder.internal_error(message, exc)
        return Report(timeline=timeline, findings=[], not_evaluated={}, internal_errors=[message])

