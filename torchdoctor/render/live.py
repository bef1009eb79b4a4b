"""Live progress while the script trains: one line at the bottom of the terminal, never in the script's way.

The script's streams are not redirected: sys.stdout and sys.stderr become transparent proxies that forward
every write unchanged (and every attribute: isatty(), fileno(), encoding, buffer...), so the script's own
output, its tqdm bars included, is byte for byte what it is without torchdoctor. The proxies only watch:
before a write reaches the terminal the live line is erased (so the text lands where it would have), and the
line is redrawn only while every stream has ended on a newline. A carriage return or a cursor-moving escape
means the script draws a progress display of its own: the live line is then erased and retired for good.
The line is drawn from a thread four times a second, reading the timeline the probes fill (it never touches
torch); the findings so far come from running the rules on the live timeline now and then, backing off when
that costs more than a sliver of the time.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from ..findings import Severity
from ..formatting import fmt, format_bytes
from ..report import is_problem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..config import Config
    from ..timeline import MemorySample, Timeline

RULES_EVERY_S = 2.0
REFRESH_S = 0.25
RULES_BUDGET = 0.02  # at most this share of wall time spent re-running the rules
ERASE = "\r\x1b[2K"
# what a progress display writes: a carriage return that is not a line ending, or an escape that moves the
# cursor or erases (colours, `m`, are fine)
DRAWS_IN_PLACE = re.compile(r"\r(?!\n)|\x1b\[[0-9;?]*[ABCDEFGHJKSTfsu]")


class WatchedStream:
    """Stands in for sys.stdout or sys.stderr: forwards everything to the real stream, telling the live
    line first so it can erase itself, and noticing a progress display of the script's own."""

    def __init__(self, stream: Any, live: LiveProgress) -> None:
        self._stream = stream
        self._live = live
        self.at_line_start = True

    def write(self, s: str) -> int:
        return self._live.before_write(self, s)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_current: list[LiveProgress] = []


def _after_fork_in_child() -> None:
    """A forked worker (a DataLoader's) has no drawing thread and may hold a copy of a taken lock: its
    proxies just forward."""
    for live in _current:
        live.lock = threading.RLock()
        live.retired = True
    _current.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LiveProgress:
    def __init__(self, timeline: Timeline, memory_samples: Callable[[], list[MemorySample]], config: Config,
                 console: Console | None = None) -> None:
        self.timeline = timeline
        self.memory_samples = memory_samples  # the run's, as they are sampled (the timeline gets them at the end)
        self.config = config
        self.console = console or Console(stderr=True)
        self.counts: dict[Severity, int] = {}
        self.next_rules = 0.0
        self.interval = RULES_EVERY_S
        self.lock = threading.RLock()
        self.shown = False  # the line is on screen, the cursor at its end
        self.retired = False  # the script draws its own progress (or we stopped): never draw again
        self.terminal: Any = None
        self.streams: list[WatchedStream] = []
        self._saved: tuple[Any, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self.terminal = self.console.file  # the real stream, taken before the proxies go in
        self._saved = (sys.stdout, sys.stderr)
        out, err = WatchedStream(sys.stdout, self), WatchedStream(sys.stderr, self)
        self.streams = [out, err]
        sys.stdout, sys.stderr = out, err
        _current.append(self)
        self._thread = threading.Thread(target=self._loop, name="torchdoctor-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        with self.lock:
            self._erase()
            self.retired = True
        if self._saved is not None:
            out, err = self._saved
            self._saved = None
            if sys.stdout is self.streams[0]:  # unless the script put in a stream of its own since
                sys.stdout = out
            if sys.stderr is self.streams[1]:
                sys.stderr = err
        if self in _current:
            _current.remove(self)

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.retired

    # -- the script's writes ----------------------------------------------------
    def before_write(self, stream: WatchedStream, s: str) -> int:
        if self.retired:
            return stream._stream.write(s)
        with self.lock:
            self._erase()
            if isinstance(s, str) and DRAWS_IN_PLACE.search(s):
                self.retired = True  # the script's own progress display: step aside for good
            written = stream._stream.write(s)
            if s:
                stream.at_line_start = s.endswith("\n")
            return written

    def _erase(self) -> None:
        if self.shown:
            self.shown = False
            self.terminal.write(ERASE)
            self.terminal.flush()

    # -- drawing ------------------------------------------------------------
    def _loop(self) -> None:
        while not self.retired:
            self.refresh()
            if self._stop.wait(REFRESH_S):
                return

    def refresh(self) -> None:
        """Draw the line now, unless a stream is mid-line (the script's next bytes would land on it)."""
        if self.retired or not all(s.at_line_start for s in self.streams):
            return
        frame = self._render(self.line())
        with self.lock:
            if self.retired or not all(s.at_line_start for s in self.streams):
                return
            for s in self.streams:  # complete lines only (each ends on a newline): out before we draw
                s._stream.flush()
            self.terminal.write(("\r" if self.shown else "") + frame + "\x1b[K")
            self.terminal.flush()
            self.shown = True

    def _render(self, text: Text) -> str:
        """The line as the terminal's escapes, one cell short of its width so it never wraps."""
        width = self.console.width
        try:
            width = os.get_terminal_size(self.terminal.fileno()).columns
        except (AttributeError, OSError, ValueError):
            pass
        text.no_wrap = True
        text.truncate(max(width - 1, 10), overflow="ellipsis")
        with self.console.capture() as capture:
            self.console.print(text, end="", soft_wrap=True)
        return capture.get()

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
