"""A class attribute replaced for one re-run and put back after, whatever the run did: how every
intervention that wraps a PyTorch method (Optimizer.__init__, DataLoader.__init__/__iter__, the
loader iterator's __next__, Tensor.backward) installs itself."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def swapped(owner: type, name: str, wrap: Callable[[Any], Callable[..., Any]]) -> Iterator[None]:
    """`owner.name` is `wrap(original)` (given the original's name and docstring) inside the block,
    the original again after it."""
    original = owner.__dict__[name]
    setattr(owner, name, functools.wraps(original)(wrap(original)))
    try:
        yield
    finally:
        setattr(owner, name, original)
