"""Which DataLoader trains, which batch came from which pass over it (epochs), and how long the
script waited for each batch."""

from __future__ import annotations

import time
import weakref
from typing import Any

from ..timeline import Habits


class Loaders:
    def __init__(self) -> None:
        self.iterations: dict[int, int] = {}  # id(loader) -> passes started over it
        self.refs: dict[int, weakref.ref] = {}  # id(loader) -> the loader, weakly
        self.names: dict[int, str] = {}  # id(loader) -> "loader 2", in order of first use
        self.settings: dict[int, dict[str, Any]] = {}
        # loader id -> [batches, seconds waited, CPU seconds in the waits, seconds of worker start-up]
        self.waits: dict[int, list] = {}
        self.passes_waited: set[tuple[int, int]] = set()  # (loader, pass) whose first batch came
        self.train_loader: int | None = None
        self.last_batch: Any = None  # by reference: a NaN is traced back to it
        self.last_batch_loader: int | None = None
        self.last_batch_pass: tuple[int, int] | None = None  # (id(loader), pass) of the last batch
        self.step_pass: tuple[int, int] | None = None  # the training pass of the last step
        self.epochs_seen = 0
        self.batch_since_step = False  # a batch was fetched after the last step: evaluation reads it
        self.first_batch_time: float | None = None

    def start_pass(self, loader: Any) -> int:
        """A new pass over `loader` begins; returns its ordinal, which tags the pass's batches."""
        count = self.iterations.get(id(loader), 0) + 1
        self.iterations[id(loader)] = count
        if id(loader) not in self.names:
            self.names[id(loader)] = f"loader {len(self.names) + 1}"
        ref = self.refs.get(id(loader))
        if ref is None or ref() is not loader:  # new, or a dead loader's id reused
            # Its own settings, also where the id is a dead loader's: a new DataLoader per epoch
            # often gets the last one's id, and may be over another dataset (a new phase).
            self.settings[id(loader)] = {
                "num_workers": getattr(loader, "num_workers", None), "pin_memory": getattr(loader, "pin_memory", None),
                "batch_size": getattr(loader, "batch_size", None),
                "dataset": type(getattr(loader, "dataset", None)).__name__,
                "dataset_size": _size(getattr(loader, "dataset", None))}
            try:
                self.refs[id(loader)] = weakref.ref(loader)
            except TypeError:
                pass
        return count

    def on_batch(self, owner: tuple[int, int] | None, batch: Any, wait_s: float, cpu_s: float = 0.0) -> None:
        """`cpu_s`: the CPU time this thread spent inside the wait. Far below the wait, the
        loading waited on something else (files, the network, a sleep): more workers than CPUs help."""
        if owner is not None:
            stats = self.waits.setdefault(owner[0], [0, 0.0, 0.0, 0.0])
            stats[0] += 1
            stats[1] += wait_s
            stats[2] += cpu_s
            if owner not in self.passes_waited:
                self.passes_waited.add(owner)
                if self.settings.get(owner[0], {}).get("num_workers"):
                    stats[3] += wait_s  # a pass's first batch with workers: they started (or restarted) first
            if self.first_batch_time is None:
                self.first_batch_time = time.perf_counter() - wait_s
        self.last_batch = batch
        self.batch_since_step = True
        self.last_batch_pass = owner
        self.last_batch_loader = owner[0] if owner else None

    def dataset_of_batch(self) -> tuple[str, int | None] | None:
        """What the last batch came from, as (dataset type, size): a new DataLoader over the same
        data (one per epoch) is the same; another dataset is not. None for tensors fed directly."""
        if self.last_batch_pass is None:
            return None
        settings = self.settings.get(self.last_batch_pass[0])
        return (settings["dataset"], settings["dataset_size"]) if settings else None

    @property
    def batch_loader(self) -> int | None:
        """The loader of a batch fetched since the last step (None: tensors fed directly)."""
        return self.last_batch_loader if self.batch_since_step else None

    @property
    def epoch(self) -> int | None:
        """The current epoch, counting passes over the training loader in which the optimizer
        stepped: a `next(iter(loader))` to look at a batch, or a validation loader, is none. A
        new training pass whose first step is still to come already counts."""
        if self.train_loader is None:
            return None
        count = self.epochs_seen
        current = self.last_batch_pass
        if current is not None and current[0] == self.train_loader and current != self.step_pass:
            count += 1
        return count - 1 if count else None

    def count_epoch(self) -> None:
        """At a counted step: a new pass over the training loader is a new epoch.

        The training loader is the one the batch before the first step came from. A batch from
        another loader that is still alive (a second, zipped loader) says nothing; if the training
        loader is gone, the script builds a new loader per epoch and this one takes its place.
        """
        current = self.last_batch_pass
        if current is None:
            return
        if self.train_loader is None:
            self.train_loader = current[0]
        elif current[0] != self.train_loader:
            ref = self.refs.get(self.train_loader)
            if ref is None or ref() is not None:
                return
            self.train_loader = current[0]
        if current != self.step_pass:
            self.step_pass = current
            self.epochs_seen += 1

    def write(self, habits: Habits, last_step_time: float | None) -> None:
        """What the loaders did, into the timeline (at the end of the run)."""
        for key, (batches, wait, cpu, startup) in self.waits.items():
            name = self.names.get(key)
            if name is not None:
                habits.loaders[name] = {"batches": batches, "wait_s": wait, "wait_cpu_s": cpu,
                                        "first_batch_wait_s": startup, **self.settings.get(key, {})}
        habits.train_loader = self.names.get(self.train_loader) if self.train_loader is not None else None
        if self.first_batch_time is not None and last_step_time is not None:
            habits.train_time_s = max(0.0, last_step_time - self.first_batch_time)


def _size(dataset: object) -> int | None:
    try:
        return len(dataset)  # type: ignore[arg-type]
    except Exception:  # an IterableDataset, or no len()
        return None
