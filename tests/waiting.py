"""Polling with a deadline, for tests that wait on another process: the dev tooling's own
``wait_until``, failing the test (AssertionError) when time runs out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from framework._dev import wait

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy (and return that); fail after
    ``timeout`` seconds, naming ``what`` was awaited."""
    return wait.wait_until(
        predicate, what, timeout=timeout, interval=interval, error=AssertionError
    )
