"""Beyond the official SDK's futures: or_timeout, map, first_success, all_settled, behind a
real restate-server (and one that replays the journal at every await)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

import framework
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

svc = framework.Service("Beyond")


def _fail(message: str) -> int:
    raise framework.TerminalError(message, status_code=422)


@svc.handler()
async def timeouts(ctx: framework.Context, _: None) -> list[str]:
    out = []
    # Resolved right away by this handler itself: well within its timeout.
    awakeable_id, soon = ctx.awakeable(type_hint=str)
    ctx.resolve_awakeable(awakeable_id, "resolved")
    out.append(await soon.or_timeout(timedelta(seconds=30)))
    # Never resolved: the durable timer wins.
    _never_id, never = ctx.awakeable(type_hint=str)
    try:
        await never.or_timeout(timedelta(milliseconds=200))
    except framework.DurableTimeoutError as error:
        assert isinstance(error, framework.TerminalError) and isinstance(error, TimeoutError)
        out.append(f"timed out {error.status_code}")
    # A timed future inside gather: gather returns once it has completed either way.
    _never_again_id, never_again = ctx.awakeable(type_hint=str)
    step = ctx.run_typed("step", lambda: "stepped")
    timed, stepped = await framework.gather(
        never_again.or_timeout(timedelta(milliseconds=100)), step
    )
    try:
        await timed
    except framework.DurableTimeoutError:
        out.append("gathered timeout")
    out.append(await stepped)
    return out


@svc.handler()
async def combine(ctx: framework.Context, _: None) -> list[object]:
    doubled = await ctx.run_typed("seven", lambda: 7).map(lambda v: v * 2)
    first = await framework.first_success(
        ctx.run_typed("bad", _fail, message="no"), ctx.run_typed("good", lambda: 5)
    )
    settled = await framework.all_settled(
        ctx.run_typed("one", lambda: 1), ctx.run_typed("broken", _fail, message="broken")
    )
    try:
        await framework.first_success(
            ctx.run_typed("bad-1", _fail, message="first"),
            ctx.run_typed("bad-2", _fail, message="second"),
        )
    except framework.TerminalError as error:
        all_failed = error.message
    return [
        doubled,
        first,
        settled[0],
        type(settled[1]).__name__,
        settled[1].status_code,
        all_failed,
    ]


@pytest.fixture(params=["default", "always_replay"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(
        framework.app([svc]), always_replay=request.param == "always_replay"
    ) as environment:
        yield environment


async def test_or_timeout_takes_the_branch_of_the_first_run(env: HarnessEnvironment) -> None:
    assert await env.client.service_call(timeouts, None) == [
        "resolved",
        "timed out 408",
        "gathered timeout",
        "stepped",
    ]


async def test_map_first_success_and_all_settled(env: HarnessEnvironment) -> None:
    assert await env.client.service_call(combine, None) == [14, 5, 1, "TerminalError", 422, "first"]
