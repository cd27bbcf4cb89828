"""Waiting for something another process or thread brings about: one poll-until-deadline loop for tests and
benchmarks (standard library only, so benchmarks that put tests/ on sys.path can import it without pytest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], what: str, timeout: float, *, poll: float = 0.1,
               error: type[BaseException] = AssertionError,
               retry_on: tuple[type[BaseException], ...] = (),
               diagnose: Callable[[], str] | None = None) -> T:
    """Call ``predicate()`` every ``poll`` s until it returns a truthy value, and return that value.

    Guarantees:
    - ``predicate`` is called at least once, and once more after ``timeout`` s have passed, so a condition that
      comes true just at the deadline still counts.
    - An exception of a type in ``retry_on`` counts as "not yet" (e.g. a server still refusing connections);
      any other exception ``predicate`` raises propagates at once (use that to give up early, e.g. when the
      process being waited on has exited).
    - On timeout it raises ``error`` (``AssertionError`` unless the caller says otherwise) with a message
      naming ``what`` was waited for, how long, and the last value returned or ``retry_on`` exception seen,
      followed by ``diagnose()``'s text (e.g. a log tail) when given; a ``retry_on`` exception is chained.
    """
    deadline = time.monotonic() + timeout
    while True:
        last_error: BaseException | None = None
        try:
            value = predicate()
        except retry_on as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            last = f"last error: {last_error!r}" if last_error is not None else f"last value: {_short(value)}"
            message = f"waited {timeout:g} s for {what}; {last}"
            if diagnose is not None:
                message += "\n" + diagnose()
            raise error(message) from last_error
        time.sleep(poll)


def _short(value: object, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
