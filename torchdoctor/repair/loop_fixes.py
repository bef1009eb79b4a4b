"""Interventions on the training loop around the model, for one re-run: the DataLoader's
arguments as the script builds it, training stopped early, and the logged loss let go of its
graph after backward."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader

from ..patching import swapped


def _loader_arguments(change: Callable[[dict[str, Any]], None]) -> contextlib.AbstractContextManager[None]:
    """`change(arguments)` on the bound arguments of every DataLoader the script builds."""

    def wrap(original: Any) -> Callable[..., None]:
        signature = inspect.signature(original)

        def init(self: DataLoader, *args: Any, **kwargs: Any) -> None:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                return original(self, *args, **kwargs)  # let DataLoader say what is wrong
            change(bound.arguments)
            return original(*bound.args, **bound.kwargs)
        return init

    return swapped(DataLoader, "__init__", wrap)


def more_dataloader_workers(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Each loader with fewer workers than `num_workers` gets them (persistent, and pinned memory,
    where the rule says so)."""
    workers = int(params["num_workers"])

    def change(arguments: dict[str, Any]) -> None:
        if int(arguments.get("num_workers") or 0) >= workers:
            return
        arguments["num_workers"] = workers
        for key in ("persistent_workers", "pin_memory"):
            if params.get(key) is not None:
                arguments[key] = bool(params[key])

    return _loader_arguments(change)


def reduce_batch_size(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Each loader batching more than `batch_size` samples batches `batch_size`."""
    size = int(params["batch_size"])

    def change(arguments: dict[str, Any]) -> None:
        current = arguments.get("batch_size", 1)
        if arguments.get("batch_sampler") is None and isinstance(current, int) and current > size:
            arguments["batch_size"] = size

    return _loader_arguments(change)


def detach_logged_tensors(params: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """After a `backward()` that frees its graph, the loss is detached in place: whatever the script
    keeps of it afterwards (`total += loss`, `losses.append(loss)`) holds the value, not the graph.
    A loss backpropagated again would fail anyway once its graph is freed."""

    def wrap(original: Any) -> Callable[..., None]:
        def backward(self: torch.Tensor, gradient: Any = None, retain_graph: bool | None = None,
                     create_graph: bool = False, inputs: Any = None) -> None:
            original(self, gradient, retain_graph, create_graph, inputs)
            if not retain_graph and not create_graph and self.grad_fn is not None and not self._is_view():
                self.detach_()
        return backward

    return swapped(torch.Tensor, "backward", wrap)


@contextlib.contextmanager
def early_stopping(params: dict[str, Any]) -> Iterator[None]:
    """Training stops where the run before this one validated best (after its step `step`): a
    training loader (one the optimizer stepped while it was iterated) that starts a pass after that
    many steps yields nothing, so the script's loop, its evaluations and whatever follows run as
    written on the model of the best evaluation. The re-run starts from the same random state, so
    its best evaluation is the one the finding named."""
    stop_after = int(params["step"]) + 1
    steps = [0]
    current: list[DataLoader | None] = [None]
    training: set[int] = set()

    def wrap(original: Any) -> Callable[[DataLoader], Any]:
        def __iter__(self: DataLoader) -> Any:
            if id(self) in training and steps[0] >= stop_after:
                return iter(())
            current[0] = self
            return original(self)
        return __iter__

    def post(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        steps[0] += 1
        if current[0] is not None:
            training.add(id(current[0]))

    handle = register_optimizer_step_post_hook(post)
    try:
        with swapped(DataLoader, "__iter__", wrap):
            yield
    finally:
        handle.remove()
