"""A class attribute replaced for a while and put back after, whatever happened meanwhile: how the
source probe learns where the optimizer and the layers were built (their `__init__`, for the whole
watched run) and how every fix intervention installs itself for one re-run (Optimizer.__init__,
DataLoader.__init__/__iter__, the loader iterator's __next__, Tensor.backward). One place, so
that a wrapper never outlives its block and never loses a class's own attribute."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

_ABSENT = object()


@contextlib.contextmanager
def swapped(owner: type, name: str, wrap: Callable[[Any], Callable[..., Any]]) -> Iterator[None]:
    """`owner.name` is `wrap(original)` (given the original's name and docstring) inside the block,
    as it was after it: the class's own attribute again, or none of its own (`nn.Sigmoid` has no
    `__init__`; the one it inherits is wrapped for it)."""
    own = owner.__dict__.get(name, _ABSENT)
    original = own if own is not _ABSENT else getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(wrap(original)))
    try:
        yield
    finally:
        if own is _ABSENT:
            with contextlib.suppress(AttributeError):
                delattr(owner, name)
        else:
            setattr(owner, name, own)


def after_init(cls: type, then: Callable[[Any], None],
               contain: Callable[[Exception], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """`then(instance)` right after every `cls.__init__` inside the block (an optimizer before a
    scheduler built on it reads its groups). With `contain`, an error in `then` goes there and the
    instance is built as if nothing watched; without, it propagates (a fix that fails must say so)."""

    def wrap(original: Any) -> Callable[..., None]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            try:
                then(self)
            except Exception as exc:
                if contain is None:
                    raise
                contain(exc)  # never break the user's object
        return __init__

    return swapped(cls, "__init__", wrap)
