"""Sees DataLoader iteration: which pass over which loader each batch came from (the recorder
counts an epoch for each pass of the training loader in which the optimizer stepped), and the
last batch, kept by reference (no copy) so a NaN can be traced back to the data; and how long
the script waited for each batch (a slow Dataset starves the training)."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _BaseDataLoaderIter

if TYPE_CHECKING:
    from .shared import Handlers

_OWNER = "_torchdoctor_loader_id"


class DataProbe:
    def __init__(self, recorder: Handlers) -> None:
        self.recorder = recorder
        self.saved: list[tuple[type, str, Any]] = []

    def install(self) -> None:
        recorder = self.recorder
        original_iter = DataLoader.__iter__
        original_next = _BaseDataLoaderIter.__next__

        @functools.wraps(original_iter)
        def __iter__(loader: DataLoader) -> Any:
            it = original_iter(loader)
            ordinal = recorder.on_loader_iter(loader)
            try:  # persistent workers hand back the same iterator: it gets the new pass's ordinal
                setattr(it, _OWNER, (id(loader), ordinal))
            except Exception:
                pass
            return it

        @functools.wraps(original_next)
        def __next__(it: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            batch = original_next(it)
            recorder.on_batch(getattr(it, _OWNER, None), batch, time.perf_counter() - start, time.thread_time() - cpu)
            return batch

        self.saved = [(DataLoader, "__iter__", original_iter), (_BaseDataLoaderIter, "__next__", original_next)]
        DataLoader.__iter__ = __iter__  # type: ignore[method-assign]
        _BaseDataLoaderIter.__next__ = __next__  # type: ignore[method-assign]

    def remove(self) -> None:
        for cls, name, original in self.saved:
            setattr(cls, name, original)
        self.saved = []
