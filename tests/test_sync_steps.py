"""Where synchronous ctx.run closures run: threads first, inline once proven fast, back to
threads for good when they turn out slow or raise inline."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from framework._runtime import steps
from framework._runtime.steps import PROVEN_RUNS, run_sync


@pytest.fixture(autouse=True)
def fresh_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "_fast_runs", {})
    monkeypatch.setattr(steps, "_INLINE_ALLOWED", True)


def _threads_of(action: Any, times: int) -> list[bool]:
    """For each run: True when it ran on the event loop's thread (inline)."""

    async def runs() -> list[bool]:
        loop_thread = threading.get_ident()
        seen = []
        for _ in range(times):
            ident = await run_sync(action, (), {})
            seen.append(ident == loop_thread)
        return seen

    return asyncio.run(runs())


def test_a_fast_function_moves_inline_after_proving_itself() -> None:
    def quick() -> int:
        return threading.get_ident()

    assert _threads_of(quick, PROVEN_RUNS + 3) == [False] * PROVEN_RUNS + [True] * 3


def test_a_slow_function_stays_in_threads() -> None:
    def slow() -> int:
        time.sleep(0.003)
        return threading.get_ident()

    assert _threads_of(slow, PROVEN_RUNS + 2) == [False] * (PROVEN_RUNS + 2)


def test_lambdas_from_different_invocations_share_their_record() -> None:
    def make() -> Any:
        return lambda: threading.get_ident()  # a new function object per "invocation"

    async def runs() -> list[bool]:
        loop_thread = threading.get_ident()
        return [await run_sync(make(), (), {}) == loop_thread for _ in range(PROVEN_RUNS + 1)]

    assert asyncio.run(runs())[-1] is True


def test_an_inline_run_that_turns_slow_goes_back_to_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delay = {"seconds": 0.0}

    def sometimes_slow() -> int:
        time.sleep(delay["seconds"])
        return threading.get_ident()

    assert _threads_of(sometimes_slow, PROVEN_RUNS + 1)[-1] is True
    delay["seconds"] = 0.02
    with caplog.at_level(logging.WARNING, logger="framework"):
        assert _threads_of(sometimes_slow, 1) == [True]  # this one blocked the loop...
    assert "held the event loop" in caplog.text
    delay["seconds"] = 0.0  # ...and never again, even fast:
    assert _threads_of(sometimes_slow, PROVEN_RUNS + 2) == [False] * (PROVEN_RUNS + 2)


def test_an_inline_failure_sends_the_function_back_to_threads() -> None:
    fail = {"now": False}

    def flaky() -> int:
        if fail["now"] and threading.current_thread() is threading.main_thread():
            raise RuntimeError("needs its own thread")
        return threading.get_ident()

    assert _threads_of(flaky, PROVEN_RUNS + 1)[-1] is True
    fail["now"] = True
    with pytest.raises(RuntimeError):
        _threads_of(flaky, 1)
    assert _threads_of(flaky, 2) == [False, False]


def test_inline_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "_INLINE_ALLOWED", False)

    def quick() -> int:
        return threading.get_ident()

    assert _threads_of(quick, PROVEN_RUNS + 3) == [False] * (PROVEN_RUNS + 3)
