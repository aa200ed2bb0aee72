"""The determinism guard: in the test harness (as in `python -m framework dev`), handler code
that reads the clock or randomness outside ctx.run is named with its line and the durable
replacement; ctx.run closures, ctx.random() and code outside handlers are left alone."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

import framework
from framework._runtime import determinism
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

svc = framework.Service("Guarded")


@svc.handler()
async def sloppy(ctx: framework.Context, _: None) -> str:
    started = time.time()  # nondeterministic: flagged
    token = uuid.uuid4()  # flagged
    fine = await ctx.run_typed("draw", lambda: random.random())  # journaled: fine
    also_fine = ctx.random().random() + ctx.uuid().int
    return f"{started > 0} {token.version} {fine < 1} {also_fine > 0}"


@svc.handler()
async def strict(ctx: framework.Context, _: None) -> str:
    try:
        random.randint(1, 6)
    except determinism.NondeterminismError as error:
        return str(error)
    return "not caught"


@pytest.fixture
async def env() -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(framework.app([svc])) as environment:
        yield environment


@pytest.fixture
def guard_mode() -> Iterator[None]:
    yield
    determinism.install("warn")  # what the harness installs, for the tests after this one


async def test_handler_code_outside_ctx_run_is_named_with_its_line(
    env: HarnessEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="framework.determinism"):
        assert await env.client.service_call(sloppy, None) == "True 4 True True"
    messages = [r.getMessage() for r in caplog.records if r.name == "framework.determinism"]
    assert any(
        f"{__file__}:26: time.time() in handler code outside ctx.run" in m
        and "await ctx.time()" in m
        for m in messages
    ), messages
    assert any(f"{__file__}:27: uuid.uuid4()" in m and "ctx.uuid()" in m for m in messages)
    assert not any("random.random" in m for m in messages), messages  # inside ctx.run
    time.time()  # outside a handler: not flagged
    assert len([r for r in caplog.records if r.name == "framework.determinism"]) == len(messages)


async def test_fail_mode_raises_at_the_call(env: HarnessEnvironment, guard_mode: None) -> None:
    determinism.install("fail")
    answer = await env.client.service_call(strict, None)
    assert f"{__file__}:36: random.randint()" in answer, answer
    assert "ctx.random().randint(...)" in answer
