"""One queue of numbers kept on the device until the next read-back.

Reading a number from a GPU waits for it. So everything sampled during a step (accuracy counts,
the update ratio, GradScaler scales, activation and input statistics) stays on the device as a
small tensor, rides along with the next step's single read-back (probes/gradients.measure_step),
and is decoded into the timeline then; whatever is still queued at the end is read once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Decode = Callable[[list[float]], None]
# Devices where a number is read at once (free there); elsewhere (CUDA) it waits for the step's
# single read-back.
EAGER_DEVICES = frozenset({"cpu"})


def read_now(device: torch.device) -> bool:
    return device.type in EAGER_DEVICES


def read_now_of(tensor: torch.Tensor) -> bool:
    """`read_now(tensor.device)`, without making a device object on every step: `is_cpu` is a
    plain flag, the first touch of a tensor after a backward costs tens of microseconds."""
    if tensor.is_cpu:
        return "cpu" in EAGER_DEVICES
    return tensor.device.type in EAGER_DEVICES


class ReadbackQueue:
    def __init__(self) -> None:
        self.entries: list[tuple[Decode, torch.Tensor]] = []

    def add(self, tensor: torch.Tensor, decode: Decode) -> None:
        self.entries.append((decode, tensor))

    def take(self) -> tuple[list[torch.Tensor], list[Decode]]:
        """The queued tensors, for the read-back, and their decoders, in the same order."""
        entries = self.entries
        if not entries:
            return [], []
        self.entries = []
        return [t for _, t in entries], [d for d, _ in entries]

    @staticmethod
    def apply(decoders: list[Decode], values: list[list[float]]) -> None:
        for decode, read in zip(decoders, values, strict=False):
            decode(read)

    def finish(self) -> None:
        """The end of the run: read what is left, one tensor at a time (there is no next step)."""
        tensors, decoders = self.take()
        for decode, tensor in zip(decoders, tensors, strict=True):
            decode(tensor.tolist())

    def clear(self) -> None:
        self.entries = []
