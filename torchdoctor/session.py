"""Doctor: owns the probes and the timeline for one run; a context manager and a decorator."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from .config import FAIL_ON_STATUS, Config
from .execfile import Outcome, Target
from .findings import Severity
from .probes.backward import BackwardProbe
from .probes.modules import ModuleProbe
from .probes.optimizer import OptimizerProbe
from .probes.optional import OPTIONAL_PROBES
from .probes.process import peak_rss
from .recorder import Recorder
from .report import Report

F = TypeVar("F", bound=Callable[..., Any])

# The doctors watching this process (at most one: a watch started while one is active joins it).
_active: list[Doctor] = []


@dataclass
class RunResult:
    """How a `Doctor.run` ended: the report, the status `torchdoctor run` exits with (the script's,
    or FAIL_ON_STATUS when --fail-on tripped), and the script's own status."""

    report: Report
    status: int
    script_status: int


class Doctor:
    """Watches training in this process and diagnoses it when the watch ends.

    With no models or optimizers given, it discovers them from PyTorch's global
    hooks (that is how `torchdoctor run` sees an unchanged script); given some, it
    watches only those.
    """

    def __init__(
        self,
        models: torch.nn.Module | list[torch.nn.Module] | None = None,
        optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer] | None = None,
        *,
        config: Config | None = None,
        json_path: str | os.PathLike[str] | None = None,
        print_report: bool = True,
        verbose: bool = False,
        console: Any = None,
        memory_budget: int | str | None = None,
        memory_report: bool = False,
        gradient_report: bool = False,
        html_path: str | os.PathLike[str] | None = None,
        live: Any = False,
        heal: bool = False,
        probes_off: Collection[str] = (),
    ) -> None:
        self.models = _as_list(models)
        self.optimizers = _as_list(optimizers)
        self.config = config or Config()
        if memory_budget is not None:
            from .units import parse_size

            self.config = dataclasses.replace(self.config, memory_budget=parse_size(memory_budget))
        self.memory_report = memory_report
        self.gradient_report = gradient_report
        self.html_path = Path(html_path).resolve() if html_path else None
        self.live = live
        self.heal = heal  # act inside the run (heal/): skip poisoned steps, roll back; off by default
        unknown = set(probes_off) - set(OPTIONAL_PROBES)
        if unknown:
            raise ValueError(f"no such probe: {', '.join(sorted(unknown))} (the probes that can be switched off: "
                             f"{', '.join(OPTIONAL_PROBES)})")
        self.probes_off = frozenset(probes_off)
        self._healer: Any = None
        self._progress: Any = None
        self.json_path = Path(json_path).resolve() if json_path else None
        self.print_report = print_report
        self.verbose = verbose
        self.console = console
        self.recorder: Recorder | None = None
        self.report: Report | None = None
        self._probes: list[Any] = []
        self._started = 0.0
        self._silenced = False  # a rank other than 0: nothing of this run is shown, not even a nested watch's
        self._outer: Doctor | None = None  # the doctor this one joined (a watch nested in a watch, or in `run`)
        self._joined: list[Doctor] = []  # the watches that joined this one: their files get the final report

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> Doctor:
        if self.recorder is not None:
            raise RuntimeError("this Doctor is already watching; use a new one per run")
        if _active:
            return self._join(_active[-1])
        self.report = None
        self.recorder = Recorder(self.models or None, self.optimizers or None)
        modules = ModuleProbe(self.recorder)
        self._probes = [modules, OptimizerProbe(self.recorder, modules), BackwardProbe(self.recorder)]
        self._probes += [make(self.recorder) for name, make in OPTIONAL_PROBES.items() if name not in self.probes_off]
        installed = []
        for probe in self._probes:
            try:
                probe.install()
                installed.append(probe)
            except Exception as exc:
                self.recorder.internal_error(f"could not install {type(probe).__name__}: {exc}", exc)
        self._probes = installed
        if self.heal:  # after the probes: its step hook reads the step the recorder has just read back
            from .heal import Healer

            self.recorder.steps.dense_norms = True  # a spike is clipped at the step it comes
            self._healer = Healer(self.recorder.timeline, self.recorder.errors).install()
        self._started = time.perf_counter()
        _active.append(self)
        if self.live:
            self._start_live()
        return self

    def _start_live(self) -> None:
        from rich.console import Console

        from .render.live import LiveProgress

        assert self.recorder is not None
        console = self.live if isinstance(self.live, Console) else None
        try:
            self._progress = LiveProgress(self.recorder.timeline, self.recorder.memory_samples, self.config, console)
            self._progress.start()  # steps aside by itself when the script draws a progress bar of its own
        except Exception as exc:
            self._progress = None
            self.recorder.internal_error(f"live progress: {type(exc).__name__}: {exc}", exc)

    def stop(self, exit_status: int | None = None, exception: BaseException | None = None) -> Report:
        """Detach every hook, then diagnose. Safe to call once after `start`."""
        if self.recorder is None:
            raise RuntimeError("this Doctor was not started")
        if self._outer is not None:
            return self._leave(exit_status, exception)
        if self._progress is not None:
            progress, self._progress = self._progress, None
            try:
                progress.stop()
            except Exception as exc:
                self.recorder.internal_error(f"live progress: {type(exc).__name__}: {exc}", exc)
        if self._healer is not None:
            self._healer.remove()
            self._healer = None
        for probe in reversed(self._probes):
            try:
                probe.remove()
            except Exception as exc:
                self.recorder.internal_error(f"could not remove {type(probe).__name__}: {exc}", exc)
        self._probes = []
        if self in _active:
            _active.remove(self)
        rec = self.recorder
        if exception is not None:
            rec.on_script_failed(exception)
        rec.finalize()
        run = rec.timeline.run
        run.duration_s = time.perf_counter() - self._started
        run.exit_status = exit_status
        if exception is not None:
            run.script_exception = f"{type(exception).__name__}: {exception}"
        from .report import interruption
        run.interrupted = interruption(exception)
        rec.timeline.memory.peak_rss = peak_rss()
        rec.timeline.memory.budget = self.config.memory_budget
        self.report = self.diagnose()
        rec.close()
        return self.report

    def diagnose(self) -> Report:
        from .rules import evaluate

        assert self.recorder is not None
        timeline = self.recorder.timeline
        result = evaluate(timeline, self.config)
        return Report(
            timeline=timeline,
            findings=result.findings,
            not_evaluated=result.not_evaluated,
            internal_errors=list(timeline.internal_errors) + result.internal_errors,
        )

    def emit(self) -> None:
        """Print and save the report as configured; never raises into the user's code. A watch that
        joined another writes its files now (what was recorded so far: a script may read them after
        its `with` block) and the outer doctor writes them again with the final report; it prints only
        when the outer doctor prints nothing, so the run shows one report."""
        if self.report is None:
            return
        outer = self._outer
        if outer is not None and outer._silenced:
            return
        self._write(self.report)
        if outer is None:
            for inner in self._joined:
                inner._write(self.report)
        # Asked for by name, the memory and gradient reports print even with -q.
        if self._prints() and (outer is None or not outer._prints()):
            try:
                from .render import render

                render(self.report, self.console, verbose=self.verbose, memory=self.memory_report,
                       findings=self.print_report, gradients=self.gradient_report)
            except Exception as exc:  # a broken terminal must not break the patient
                print(f"torchdoctor: could not print the report: {exc}", file=sys.stderr)

    def _prints(self) -> bool:
        return self.print_report or self.memory_report or self.gradient_report

    def _write(self, report: Report) -> None:
        """The JSON and HTML files asked for; a failure is said on stderr, never raised."""
        from . import jsonreport

        if self.json_path is not None:
            try:
                jsonreport.write(report, self.json_path)
            except Exception as exc:
                print(f"torchdoctor: could not write {self.json_path}: {exc}", file=sys.stderr)
        if self.html_path is not None:
            try:
                from .render.html import write_html

                write_html(jsonreport.to_dict(report), self.html_path)
            except Exception as exc:  # the HTML is an extra: its failure must not fail the run
                print(f"torchdoctor: could not write {self.html_path}: {exc}", file=sys.stderr)

    # -- a watch inside a watch (the script of `torchdoctor run` using the API) ------------------
    def _join(self, outer: Doctor) -> Doctor:
        """Start as part of `outer`: no probes of its own (the outer ones see everything), `log()`
        into the outer recorder, and its models watched by the outer doctor where that one
        discovers them. One doctor at most is active; a third watch joins the same one."""
        from .nesting import note_models

        self._outer, self.recorder, self.report = outer, outer.recorder, None
        if self.json_path is not None or self.html_path is not None:
            outer._joined.append(self)
        if outer._prints():  # the one report shows the tables the script asked for
            outer.memory_report = outer.memory_report or self.memory_report
            outer.gradient_report = outer.gradient_report or self.gradient_report
        note_models(outer.recorder, outer._probes, self.models)
        return self

    def _leave(self, exit_status: int | None, exception: BaseException | None) -> Report:
        """End a joined watch: the diagnosis of what the outer doctor has recorded so far, the outer
        doctor still watching."""
        from .nesting import snapshot

        assert self.recorder is not None and self._outer is not None
        self.report = snapshot(self.recorder, self.config, self._outer._started, exit_status, exception)
        return self.report

    def run(self, target: str | Target, args: Sequence[str] = (), *, module: bool = False) -> RunResult:
        """Run a script (or, with `module`, a module) unchanged under this watch: what
        `torchdoctor run` does. Start, run, and in a `finally` stop, diagnose and emit, so a crash
        of torchdoctor's own, Ctrl-C or SIGTERM still leaves the report. Under torchrun, rank 0
        gathers every rank's report and alone prints and writes it. Bad targets raise BadTarget
        before anything starts."""
        from .distributed import detect
        from .execfile import prepare_module, prepare_script, run_target, terminated_as_exit

        if not isinstance(target, Target):
            target = prepare_module(target) if module else prepare_script(target)
        rank = detect()  # a rank of torchrun: rank 0 alone prints and writes the report, for all ranks
        main = rank is None or rank.is_main
        if not main:
            self._silence()
        self.start()
        assert self.recorder is not None
        self.recorder.timeline.run.argv = [target.display, *args]
        if rank is not None:
            rank.begin(self.recorder.timeline.run)
        outcome = Outcome(1)
        try:
            with terminated_as_exit():
                outcome = run_target(target, list(args))
        except BaseException as exc:  # run_target contains the script's errors: this is a signal's
            outcome = Outcome(130 if isinstance(exc, KeyboardInterrupt) else 1, exc)
            raise
        finally:
            try:
                sys.stdout.flush()
            except Exception:
                pass
            report = self.stop(exit_status=outcome.status, exception=outcome.exception)
            if rank is not None:
                self.report = report = rank.finish(report, outcome.status, outcome.exception,
                                                   disabled=set(self.config.disabled))
            if main:
                self.emit()
        status = outcome.status
        if main and self.fails():
            status = FAIL_ON_STATUS
        return RunResult(report, status, outcome.status)

    def _silence(self) -> None:
        """A rank other than 0: its report goes to rank 0, nothing of torchdoctor's is shown."""
        self.json_path = self.html_path = None
        self.print_report = self.memory_report = self.gradient_report = False
        self.live = False
        self._silenced = True

    def fails(self, threshold: Severity | str | None = None) -> bool:
        """True when a finding at or above the threshold (default: config.fail_on) was made."""
        level = Severity.parse(threshold) if threshold is not None else self.config.fail_on
        return self.report is not None and self.report.fails(level)

    # -- context manager & decorator --------------------------------------------
    def __enter__(self) -> Doctor:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.stop(exit_status=None if exc is None else 1, exception=exc)
        self.emit()

    def __call__(self, func: F) -> F:
        template = self

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            doctor = template.clone()
            wrapper.doctor = doctor  # type: ignore[attr-defined]
            with doctor:
                return func(*args, **kwargs)

        wrapper.doctor = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def clone(self) -> Doctor:
        return Doctor(self.models, self.optimizers, config=self.config, json_path=self.json_path,
                      print_report=self.print_report, verbose=self.verbose, console=self.console,
                      memory_report=self.memory_report, gradient_report=self.gradient_report,
                      html_path=self.html_path, live=self.live, heal=self.heal)

    def log(self, **values: float) -> None:
        """Record values the probes cannot see, e.g. `doctor.log(val_loss=0.41, val_acc=0.87)` for a
        validation computed in a way torchdoctor cannot observe. Logged validation takes the place
        of what the probes inferred. Other names are kept as they are, with the step."""
        if self.recorder is None:
            raise RuntimeError("log() is only valid while watching")
        from .timeline import EvalPass, Event

        rec = self.recorder
        numbers = {k: float(v) for k, v in values.items()}
        rec.timeline.events.append(Event("log", rec.step, rec.epoch, numbers))
        loss = numbers.get("val_loss")
        accuracy = numbers.get("val_acc", numbers.get("val_accuracy"))
        if loss is not None or accuracy is not None:
            epoch = rec.timeline.steps[-1].epoch if rec.timeline.steps else None
            rec.timeline.evaluations.append(EvalPass(rec.step, epoch, loss, accuracy, loader="logged", source="log"))


def watch(
    model: torch.nn.Module | list[torch.nn.Module] | None = None,
    optimizer: torch.optim.Optimizer | list[torch.optim.Optimizer] | None = None,
    **options: Any,
) -> Doctor:
    """Watch a training loop: `with watch(model, optimizer) as doctor:` or `@watch()`.

    Options: `config`, `json_path`, `print_report` (default True), `verbose`, `console`,
    `memory_budget` ("16GiB": check that a step would fit there), `memory_report` and
    `gradient_report` (print those tables), `html_path` (write the HTML report there).

    Started while another watch is active (under `torchdoctor run`, or nested), it joins that one:
    no probes of its own, `log()` into the outer recording, its files written with the outer
    report, and `doctor.report` the diagnosis of what had been recorded when its block ended.
    """
    return Doctor(model, optimizer, **options)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]
