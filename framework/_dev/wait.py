"""Polling until a deadline: the one loop every "wait until it is up" in the tooling uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """What ``wait_until`` raises by default when time runs out."""


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else repr(error)


def wait_until(
    predicate: Callable[[], T | None],
    what: str,
    *,
    timeout: float,
    interval: float = 0.05,
    retry_on: tuple[type[Exception], ...] = (),
    error: Callable[[str], Exception] = WaitTimeout,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    ``what`` names the awaited condition for the message of the error raised after
    ``timeout`` seconds: ``error(message)``, a ``WaitTimeout`` unless told otherwise. An
    exception of a ``retry_on`` type counts as "not yet" (the last one is quoted in that
    message); any other propagates at once, which is how a predicate gives up early.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry_on as problem:
            last = problem
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.0f}s waiting for {what}"
            if last is not None:
                message += f" (last error: {_first_line(last)})"
            raise error(message)
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
