"""Live progress while the script trains: one line, redrawn in place below the script's output.

rich's Live redraws it from its own thread four times a second, reading the timeline the probes
fill (it never touches torch); the script's prints go above it through rich's stdout/stderr
redirection, so the two never mix. The findings so far come from running the rules on the live
timeline now and then, backing off when that costs more than a sliver of the time.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..findings import Severity
from ..formatting import fmt, format_bytes
from ..report import is_problem

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config
    from ..timeline import MemorySample, Timeline

RULES_EVERY_S = 2.0
OTHER_PROGRESS = ("tqdm", "rich.progress", "alive_progress", "progressbar", "enlighten")
RULES_BUDGET = 0.02  # at most this share of wall time spent re-running the rules


class LiveProgress:
    def __init__(self, timeline: Timeline, memory_samples: Callable[[], list[MemorySample]], config: Config,
                 console: Console | None = None) -> None:
        self.timeline = timeline
        self.memory_samples = memory_samples  # the run's, as they are sampled (the timeline gets them at the end)
        self.config = config
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.counts: dict[Severity, int] = {}
        self.next_rules = 0.0
        self.interval = RULES_EVERY_S

    def start(self) -> None:
        self.live = Live(console=self.console, get_renderable=self.line, refresh_per_second=4, transient=True,
                         redirect_stdout=True, redirect_stderr=True)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()

    def on_step(self) -> None:
        """Called on the script's thread after each step: a script with a progress display of its
        own keeps it, and this one steps aside rather than fight it for the bottom line."""
        if self.live is not None and any(name in sys.modules for name in OTHER_PROGRESS):
            self.stop()

    def line(self) -> Text:
        try:
            return self._line()
        except Exception:  # the timeline changed under us mid-read: draw the next frame instead
            return Text("torchdoctor ▸ …", style="dim")

    def _line(self) -> Text:
        tl = self.timeline
        text = Text()
        text.append("torchdoctor ▸ ", style="bold")
        if not tl.steps:
            return text + Text("waiting for the first optimizer step", style="dim")
        last = tl.steps[-1]
        bits = [f"step {last.step}"]
        if last.epoch is not None:
            bits.append(f"epoch {last.epoch}")
        loss = next((r.loss for r in reversed(tl.steps[-50:]) if r.loss is not None), None)
        if loss is not None:
            bits.append(f"loss {fmt(loss)}")
        norm = next((r.grad_norm for r in reversed(tl.steps[-50:]) if r.grad_norm is not None), None)
        if norm is not None:
            bits.append(f"grad norm {fmt(norm)}")
        samples = self.memory_samples()
        if samples:
            sample = samples[-1]
            if sample.allocated is not None:
                bits.append(f"CUDA {format_bytes(sample.allocated)}")
            elif sample.rss is not None:
                bits.append(f"RSS {format_bytes(sample.rss)}")
        text.append(" · ".join(bits))
        self._update_counts()
        if self.counts:
            worst = max(self.counts)
            summary = ", ".join(f"{n} {s.label}" for s, n in sorted(self.counts.items(), reverse=True))
            text.append(f" · findings: {summary}", style="bold red" if worst >= Severity.ERROR else "yellow")
        return text

    def _update_counts(self) -> None:
        now = time.monotonic()
        if now < self.next_rules:
            return
        from ..rules import evaluate

        started = time.perf_counter()
        result = evaluate(self.timeline, self.config)
        spent = time.perf_counter() - started
        counts: dict[Severity, int] = {}
        for f in result.findings:
            if is_problem(f.severity):
                counts[f.severity] = counts.get(f.severity, 0) + 1
        self.counts = counts
        self.interval = max(RULES_EVERY_S, spent / RULES_BUDGET)
        self.next_rules = now + self.interval
