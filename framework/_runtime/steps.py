"""Where a synchronous ``ctx.run`` closure runs: a worker thread, or inline once proven fast.

A plain function may block (an HTTP request, a database call), so it starts out in a worker
thread, where it cannot stall the other invocations on the event loop. But handing work to
a thread and back costs far more than a short function itself (the thread must win the GIL
from a busy event loop), so a function whose recent runs were all quick runs inline on the
loop from then on. One that turns out slow inline, or raises there, goes back to threads for
good. Functions are told apart by their code object, so a lambda written in a handler is
one function across all invocations.

``FRAMEWORK_SYNC_STEPS=thread`` keeps every synchronous closure in worker threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Final

logger = logging.getLogger("framework")

# A function runs inline after this many consecutive thread runs each faster than FAST_S.
PROVEN_RUNS: Final = 4
FAST_S: Final = 0.001
# An inline run slower than this sends the function back to threads for good.
SLOW_S: Final = 0.005

_INLINE_ALLOWED = os.environ.get("FRAMEWORK_SYNC_STEPS", "auto").lower() != "thread"

# code identity -> number of consecutive fast thread runs, or -1 once it must stay in threads
_fast_runs: dict[Any, int] = {}


def _identity(action: Callable[..., Any]) -> Any:
    target: Any = action
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)  # a bound method: its function
    code = getattr(target, "__code__", None)
    if code is not None:
        return code
    # Builtins and callable objects: one entry per kind, not per object (bounded).
    return (type(target), getattr(target, "__qualname__", None))


async def run_sync(
    action: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run a synchronous closure: inline if it has proven fast, else in a worker thread."""
    key = _identity(action)
    fast_runs = _fast_runs.get(key, 0)
    if _INLINE_ALLOWED and fast_runs >= PROVEN_RUNS:
        started = time.perf_counter()
        try:
            return action(*args, **kwargs)
        except BaseException:
            _fast_runs[key] = -1  # maybe it needs a thread (e.g. it runs an event loop)
            raise
        finally:
            elapsed = time.perf_counter() - started
            if elapsed > SLOW_S and _fast_runs.get(key) != -1:
                _fast_runs[key] = -1
                logger.warning(
                    "ctx.run closure %s held the event loop for %.1f ms; it runs in a worker "
                    "thread from now on",
                    getattr(action, "__qualname__", action),
                    elapsed * 1000,
                )
    timed = _Timed(functools.partial(action, *args, **kwargs))
    context = contextvars.copy_context()
    value = await asyncio.get_running_loop().run_in_executor(None, context.run, timed)
    if fast_runs >= 0:
        _fast_runs[key] = fast_runs + 1 if timed.elapsed < FAST_S else 0
    return value


class _Timed:
    """Calls a function and remembers how long it ran (in the worker thread)."""

    __slots__ = ("call", "elapsed")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.elapsed = float("inf")

    def __call__(self) -> Any:
        started = time.perf_counter()
        value = self.call()
        self.elapsed = time.perf_counter() - started
        return value


__all__ = ["run_sync"]
