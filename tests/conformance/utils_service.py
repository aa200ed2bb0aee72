"""TestUtilsService: echoes, headers, raw bytes, timers, step counting, cancel and signals."""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from framework import Context, Service, gather

test_utils = Service("TestUtilsService")


class ResolveSignalRequest(TypedDict):
    """Which signal of which invocation to resolve, and with what."""

    invocationId: str
    signalName: str
    value: str


class RejectSignalRequest(TypedDict):
    """Which signal of which invocation to reject, and why."""

    invocationId: str
    signalName: str
    reason: str


@test_utils.handler(name="echo")
async def echo(ctx: Context, input: str) -> str:
    return input


@test_utils.handler(name="uppercaseEcho")
async def uppercase_echo(ctx: Context, input: str) -> str:
    return input.upper()


@test_utils.handler(name="echoHeaders")
async def echo_headers(ctx: Context) -> dict[str, str]:
    return dict(ctx.request().headers)


@test_utils.handler(name="rawEcho")
async def raw_echo(ctx: Context, input: bytes) -> bytes:
    return input


@test_utils.handler(name="sleepConcurrently")
async def sleep_concurrently(ctx: Context, millisDuration: list[int]) -> None:
    """Start one timer per duration, then wait for all of them (an older contract's handler)."""
    await gather(*(ctx.sleep(timedelta(milliseconds=ms)) for ms in millisDuration))


@test_utils.handler(name="countExecutedSideEffects")
async def count_executed_side_effects(ctx: Context, increments: int) -> int:
    """How many of ``increments`` steps this attempt ran (replayed ones do not count)."""
    executed = 0

    def increment() -> None:
        nonlocal executed
        executed += 1

    for _ in range(increments):
        await ctx.run_typed("count", increment)
    return executed


@test_utils.handler(name="cancelInvocation")
async def cancel_invocation(ctx: Context, invocationId: str) -> None:
    ctx.cancel_invocation(invocationId)


@test_utils.handler(name="resolveSignal")
async def resolve_signal(ctx: Context, req: ResolveSignalRequest) -> None:
    ctx.resolve_signal(req["invocationId"], req["signalName"], req["value"])


@test_utils.handler(name="rejectSignal")
async def reject_signal(ctx: Context, req: RejectSignalRequest) -> None:
    ctx.reject_signal(req["invocationId"], req["signalName"], req["reason"])
