"""The latest forward and loss call, shared by the recorder's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Latest:
    """The latest model forward and loss call, by reference: a NaN loss is traced back to them,
    and an evaluation loss is told apart from a training one by the model that made it."""

    call: tuple[Any, tuple, dict] | None = None  # (model, args, kwargs)
    output: Any = None  # small outputs only, detached
    loss_call: tuple[tuple, Any] | None = None  # (the loss's other arguments, its value if a loss module's)

    @property
    def model(self) -> Any:
        return self.call[0] if self.call is not None else None

    def clear(self) -> None:
        self.call = self.output = self.loss_call = None
