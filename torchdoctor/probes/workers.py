"""Sees the training done in `multiprocessing` workers (Hogwild: N processes train one shared model).

A forked child inherits every probe and the recorder, so it records its own timeline as a run
would; but it ends with `os._exit`, and its timeline dies with it. `BaseProcess._bootstrap` (what
the child runs, fork start method) is wrapped: after the worker's target returns, the child
hands its timeline back in a file of a folder the parent made when it started its first process
(as torchrun's ranks hand their reports to rank 0, distributed/exchange.py). The parent reads
them when the probes are removed, and the recorder merges them (recorder/workers.py).

A child that trained nothing (a DataLoader worker) writes nothing. The spawn and forkserver
start methods begin a fresh interpreter without torchdoctor: their workers are not observed.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing.process as mp_process
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .shared import Handlers


class WorkerProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.saved: Any = None
        self.folder: Path | None = None
        self.parent_pid = os.getpid()

    def install(self) -> None:
        cls = mp_process.BaseProcess
        start, bootstrap = cls.__dict__["start"], cls.__dict__["_bootstrap"]
        self.saved = (cls, start, bootstrap)
        probe = self

        @functools.wraps(start)
        def wrapped_start(process: Any) -> None:
            if probe.folder is None and os.getpid() == probe.parent_pid:
                probe.folder = Path(tempfile.mkdtemp(prefix="torchdoctor-workers-"))
            return start(process)

        @functools.wraps(bootstrap)
        def wrapped_bootstrap(process: Any, *args: Any, **kwargs: Any) -> int:
            if os.getpid() == probe.parent_pid or probe.folder is None:
                return bootstrap(process, *args, **kwargs)
            mark = probe.recorder.on_worker_start()
            try:
                return bootstrap(process, *args, **kwargs)
            finally:
                probe._hand_back(mark, getattr(process, "name", ""))

        cls.start = wrapped_start  # type: ignore[method-assign]
        cls._bootstrap = wrapped_bootstrap  # type: ignore[attr-defined]

    def _hand_back(self, mark: Any, name: str) -> None:
        """In the child, after its target: its timeline, for the parent (nothing if it trained nothing)."""
        with contextlib.suppress(Exception):
            timeline = self.recorder.on_worker_exit(mark)
            if timeline is None or self.folder is None:
                return
            fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=self.folder)
            with os.fdopen(fd, "wb") as out:
                pickle.dump({"pid": os.getpid(), "name": name, "timeline": timeline}, out)
            os.replace(tmp, self.folder / f"worker-{os.getpid()}.pkl")

    def remove(self) -> None:
        if self.saved is not None:
            cls, start, bootstrap = self.saved
            cls.start = start  # type: ignore[method-assign]
            cls._bootstrap = bootstrap  # type: ignore[attr-defined]
            self.saved = None
        if self.folder is None or os.getpid() != self.parent_pid:
            return
        folder, self.folder = self.folder, None
        handed: list[dict[str, Any]] = []
        for path in sorted(folder.glob("worker-*.pkl"), key=lambda p: p.stat().st_mtime):
            try:
                with path.open("rb") as f:
                    handed.append(pickle.load(f))
            except Exception as exc:
                self.recorder.internal_error(f"a worker's timeline could not be read: {type(exc).__name__}: {exc}")
        shutil.rmtree(folder, ignore_errors=True)
        if handed:
            self.recorder.on_worker_timelines(handed)
