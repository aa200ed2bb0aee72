"""Failing: terminal errors (with metadata) from handlers, calls and steps, and retried steps."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from framework import (
    InvocationRetryPolicy,
    ObjectContext,
    RunOptions,
    TerminalError,
    VirtualObject,
)

failing = VirtualObject("Failing")

# Attempts are counted in this process (per object key), not in Restate state: a retried
# invocation or step starts again from the journal, and only memory outlives it.
_attempts: Counter[str] = Counter()
_attempts_lock = threading.Lock()

# The attempt of failingCallWithEventualSuccess that succeeds.
SUCCESS_ATTEMPT = 4

_QUICK_RETRIES = RunOptions[int](
    initial_retry_interval=timedelta(milliseconds=10), retry_interval_factor=1.0
)


def _count_attempt(name: str) -> int:
    with _attempts_lock:
        _attempts[name] += 1
        return _attempts[name]


@dataclass
class FailureToPropagate:
    """The message (and optional metadata) of the terminal error to raise."""

    errorMessage: str
    metadata: dict[str, str] | None


def _failure(failure: FailureToPropagate) -> TerminalError:
    return TerminalError(failure.errorMessage, metadata=failure.metadata)


@failing.handler(name="terminallyFailingCall")
async def terminally_failing_call(ctx: ObjectContext, failure: FailureToPropagate) -> None:
    raise _failure(failure)


@failing.handler(name="callTerminallyFailingCall")
async def call_terminally_failing_call(ctx: ObjectContext, failure: FailureToPropagate) -> str:
    await ctx.object_call(terminally_failing_call, str(ctx.uuid()), failure)
    raise TerminalError("terminallyFailingCall answered instead of failing")


@failing.handler(
    name="failingCallWithEventualSuccess",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=20), exponentiation_factor=1.0
    ),
)
async def failing_call_with_eventual_success(ctx: ObjectContext) -> int:
    attempt = _count_attempt(f"eventual-success/{ctx.key()}")
    if attempt < SUCCESS_ATTEMPT:
        raise RuntimeError(f"attempt {attempt} fails, to be retried")
    return attempt


@failing.handler(name="terminallyFailingSideEffect")
async def terminally_failing_side_effect(ctx: ObjectContext, failure: FailureToPropagate) -> None:
    def fail() -> None:
        raise _failure(failure)

    await ctx.run_typed("fail terminally", fail)
    raise TerminalError("the step answered instead of failing")


@failing.handler(name="sideEffectSucceedsAfterGivenAttempts")
async def side_effect_succeeds_after_given_attempts(
    ctx: ObjectContext, minimumAttempts: int
) -> int:
    name = f"succeeds-after/{ctx.key()}"

    def attempt() -> int:
        count = _count_attempt(name)
        if count < minimumAttempts:
            raise RuntimeError(f"step attempt {count} of {minimumAttempts} fails")
        return count

    return await ctx.run_typed("succeeds eventually", attempt, _QUICK_RETRIES)


@failing.handler(name="sideEffectFailsAfterGivenAttempts")
async def side_effect_fails_after_given_attempts(
    ctx: ObjectContext, retryPolicyMaxRetryCount: int
) -> int:
    name = f"fails-after/{ctx.key()}"

    def attempt() -> int:
        raise RuntimeError(f"step attempt {_count_attempt(name)} fails")

    options = RunOptions[int](
        max_attempts=retryPolicyMaxRetryCount,
        initial_retry_interval=timedelta(milliseconds=10),
        retry_interval_factor=1.0,
    )
    try:
        await ctx.run_typed("always fails", attempt, options)
    except TerminalError:
        with _attempts_lock:
            return _attempts[name]
    raise TerminalError("the step succeeded although it always fails")
