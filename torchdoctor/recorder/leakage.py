"""Are validation samples training samples? Fingerprints of the model's inputs, row by row.

A fingerprint is two numbers per sample, computed on the device in one small op: the sum of a
strided sample of at most 64 of its values, and a weighted sum of the same values. Training rows
are fingerprinted on the sampled steps only (the update-ratio schedule), validation rows on the
first batches of evaluation forwards run without gradients (not over the training loader); both
ride along with the step's read-back. At the end the validation fingerprints are looked up among
the training ones; the timeline keeps the counts only (Habits.leakage).

Rows are matched at 6 significant digits: a sample seen again gives the same numbers, two
different real-valued samples almost never do. Augmented training inputs (random crops, noise)
never match, so a leak through augmentation is not seen; that errs on the side of silence.
"""

from __future__ import annotations

from typing import Any

import torch

from ..timeline import Timeline
from .readback import ReadbackQueue

SAMPLED_VALUES = 64  # values per row the fingerprint reads
MAX_BATCH_ROWS = 1024  # a larger batch is fingerprinted on its first rows
MAX_TRAIN_ROWS = 1 << 15
MAX_VAL_ROWS = 1 << 13


def fingerprint(x: Any) -> torch.Tensor | None:
    """(rows, 2) fingerprints of a batch of samples (first dimension), None for what is not one."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.is_sparse or x.shape[0] < 1 or x[0].numel() < 4:
        return None
    if not (x.is_floating_point() or x.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8)):
        return None
    with torch.no_grad():
        t = x.detach()[:MAX_BATCH_ROWS].flatten(1)
        stride = max(1, t.shape[1] // SAMPLED_VALUES)
        s = t[:, ::stride][:, :SAMPLED_VALUES].float()
        weights = torch.arange(1, s.shape[1] + 1, device=s.device, dtype=torch.float32).mul_(0.6180339887).frac_()
        return torch.stack([s.sum(dim=1), (s * (weights + 0.5)).sum(dim=1)], dim=1)


def _keys(values: list[float]) -> list[tuple[str, str]]:
    return [(f"{values[i]:.5e}", f"{values[i + 1]:.5e}") for i in range(0, len(values) - 1, 2)]


class Leakage:
    def __init__(self, timeline: Timeline, queue: ReadbackQueue) -> None:
        self.timeline = timeline
        self.queue = queue
        self.train: set[tuple[str, str]] = set()
        self.val: list[tuple[int, tuple[str, str]]] = []  # (step, fingerprint)
        self.train_rows = 0
        self.train_duplicates = 0  # rows equal to another row of the same batch: data with repeats
        self.batch_rows = 0  # the largest training batch fingerprinted
        self.sampled: set[int] = set()
        self.val_queued = 0
        self.training_model: int | None = None  # id of the model whose training forward ran last

    def on_training_input(self, model: Any, args: tuple, step: int, due: bool) -> None:
        self.training_model = id(model)
        if not due or not args or step in self.sampled or self.train_rows >= MAX_TRAIN_ROWS:
            return
        fp = fingerprint(args[0])
        if fp is None:
            return
        self.sampled.add(step)
        self.train_rows += fp.shape[0]
        self.queue.add(fp.reshape(-1), self._train_decoded)

    def _train_decoded(self, values: list[float]) -> None:
        keys = _keys(values)
        self.train_duplicates += len(keys) - len(set(keys))
        self.batch_rows = max(self.batch_rows, len(keys))
        self.train.update(keys)

    def on_eval_input(self, model: Any, args: tuple, step: int) -> None:
        """A forward without gradients of the model being trained, not over the training loader: a
        validation batch. Another model's (a distillation teacher's on the training batch) is not."""
        if not args or self.val_queued >= MAX_VAL_ROWS or id(model) != self.training_model:
            return
        fp = fingerprint(args[0])
        if fp is None:
            return
        self.val_queued += fp.shape[0]
        self.queue.add(fp.reshape(-1), lambda v: self.val.extend((step, k) for k in _keys(v)))

    def finish(self) -> None:
        """After the last read-back: how many validation rows were seen among the training ones."""
        if not self.val or not self.train:
            return
        seen = [step for step, key in self.val if key in self.train]
        covered = len({key for _, key in self.val if key in self.train})  # distinct training rows evaluated
        self.timeline.habits.leakage = {
            "train_rows": self.train_rows, "train_distinct": len(self.train),
            "train_duplicates": self.train_duplicates, "train_batch_rows": self.batch_rows,
            "val_rows": len(self.val), "val_seen": len(seen), "train_covered": covered / len(self.train),
            "first_step": min(seen) if seen else None,
        }

    def clear(self) -> None:
        self.train = set()
        self.val = []
