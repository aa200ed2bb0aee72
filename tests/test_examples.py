"""The example services in services/ behave as their docstrings say, behind a real server,
driven through the project's own test harness and ingress client, as a user would."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from framework.client import HttpError
from framework.testing import HarnessEnvironment
from services.counter import add
from services.greeter import greet
from services.signup import click, run, status
from services.trip import book

Harness = Callable[..., HarnessEnvironment]


@pytest.fixture
def env(restate_test_harness: Harness) -> HarnessEnvironment:
    return restate_test_harness("services.app:app")  # served once per session


def test_greeter_and_counter(env: HarnessEnvironment) -> None:
    async def scenario() -> None:
        assert (await env.client.service_call(greet, "Ann")).startswith("Hello, Ann!")
        key = f"c{time.time_ns()}"
        assert await env.client.object_call(add, key, 2) == 2
        assert await env.client.object_call(add, key, 3) == 5

    asyncio.run(scenario())


def test_trip_saga_books_or_undoes(env: HarnessEnvironment) -> None:
    async def scenario() -> None:
        booked = await env.client.service_call(book, {"traveller": "Ann", "card": "4242"})
        assert booked["flight"] == "flight-for-Ann"
        assert booked["payment"].startswith("payment-")
        with pytest.raises(HttpError) as declined:
            await env.client.service_call(book, {"traveller": "Bob", "card": "0000"})
        assert declined.value.status_code == 402 and "declined" in declined.value.message

    asyncio.run(scenario())
    log = _wait_for(env, "released flight-for-Bob")
    assert log.index("released hotel-for-Bob") < log.index("released flight-for-Bob")


def test_signup_workflow_waits_for_the_click(env: HarnessEnvironment) -> None:
    user = f"u{time.time_ns()}"
    asyncio.run(env.client.workflow_send(run, user, {"email": f"{user}@example.com"}))
    log = _wait_for(env, f"mail to {user}@example.com")
    secret = re.search(rf"mail to {user}@example.com: .* secret (\S+)", log)
    assert secret is not None

    async def scenario(secret: str) -> None:
        assert await env.client.workflow_call(status, user, None) == (
            "waiting for e-mail confirmation"
        )
        await env.client.workflow_call(click, user, secret)
        assert await env.client.workflow_attach(run, user) == f"{user} is signed up"
        assert await env.client.workflow_call(status, user, None) == "confirmed"

    asyncio.run(scenario(secret.group(1)))


def _wait_for(env: HarnessEnvironment, text: str, timeout: float = 20) -> str:
    service = env.service
    assert service is not None  # a "module:attr" app runs in a child process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = service.log_text()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the service log:\n{service.log_tail()}")


def test_the_support_agent_refunds_once_and_keeps_the_conversation() -> None:
    from framework.testing import create_test_harness
    from services import agent

    async def scenario() -> None:
        async with create_test_harness(agent.app, always_replay=True) as env:
            agent.REFUNDS.clear()
            answer = await env.client.object_call(agent.ask, "ann", "My order 7 arrived broken")
            assert answer == "Done: refunded order 7."
            assert agent.REFUNDS == ["7"]  # once, though every await replayed the turn
            answer = await env.client.object_call(agent.ask, "ann", "And order 42?")
            assert answer == "Done: shipped on Monday."
            assert await env.client.object_call(agent.turns, "ann", None) > 4  # both turns kept
            assert await env.client.object_call(agent.turns, "bob", None) == 0

    asyncio.run(scenario())
