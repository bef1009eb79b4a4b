"""Containment: an error inside torchdoctor is noted in the report and never reaches the user's code."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

MAX_INTERNAL_ERRORS = 20


class InternalErrors:
    """Each distinct message once (a handler failing at every step would flood the report)."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink
        self.counts: dict[str, int] = {}

    def note(self, message: str, exc: BaseException | None = None) -> None:
        count = self.counts.get(message, 0)
        self.counts[message] = count + 1
        if count == 0 and len(self.sink) < MAX_INTERNAL_ERRORS:
            where = ""
            if exc is not None and exc.__traceback__ is not None:
                last = traceback.extract_tb(exc.__traceback__)[-1]
                where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
            self.sink.append(message + where)


def guarded(func: F) -> F:
    """Contain any exception from a handler of an object with `internal_error`: record it,
    return None, let the run go on."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except Exception as exc:
            self.internal_error(f"{func.__name__}: {type(exc).__name__}: {exc}", exc)
            return None

    return wrapper  # type: ignore[return-value]
