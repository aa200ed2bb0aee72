"""Services written as official-SDK users write them (tests/portable_services.py) behave as
that SDK's documentation says, behind a real restate-server: the default one and one that
suspends at every await (every resume replays the journal). Driven through the ingress with
the project's client, as a user's test would."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from framework import HttpError, create_test_harness
from framework.testing import HarnessEnvironment
from tests import portable_services as svc

pytestmark = pytest.mark.anyio

APP = "tests.portable_services:app"  # served in a child process, as in production


@pytest.fixture(params=["default", "always_replay"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(APP, always_replay=request.param == "always_replay") as env:
        yield env


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_portable_services(env: HarnessEnvironment) -> None:
    """All scenarios against one server (each harness starts its own)."""
    client = env.client

    # A greeter: deterministic randomness, a Pydantic model in and out.
    greeted = await client.service_call(svc.greet, svc.Greeting(name="Ann", times=2))
    assert greeted.message == "Hi Ann! Hi Ann!"
    assert 1 <= greeted.lucky <= 100 and uuid.UUID(greeted.token).version == 4
    with pytest.raises(HttpError) as bad:  # as JSON, by name: a field is missing
        await client.service_call("PortableGreeter/greet", {"times": 2})
    assert bad.value.status_code == 400 and "name" in bad.value.message

    # A saga: compensations run in reverse order, then the failure reaches the caller.
    ok = svc.Subscription(user="bo", services=["news", "music"], card="4242424242424242")
    assert await client.service_call(svc.subscribe, ok) == ["bo@news", "bo@music"]
    with pytest.raises(HttpError) as declined:
        await client.service_call(svc.subscribe, ok.model_copy(update={"card": "0000111122223333"}))
    assert declined.value.status_code == 402
    assert declined.value.message == (
        "card declined; undone: refund 0000111122223333, cancel music, cancel news"
    )
    with pytest.raises(HttpError) as closed:
        await client.service_call(
            svc.subscribe, ok.model_copy(update={"services": ["news", "closed", "tv"]})
        )
    assert closed.value.message.endswith("undone: cancel closed, cancel news")

    # Concurrent steps, gathered.
    started = time.monotonic()
    assert await client.service_call(svc.subscribe_all, ["a", "b", "c"]) == ["A", "B", "C"]
    assert time.monotonic() - started < 10

    # An awakeable resolved, and one rejected, from outside (the ingress).
    for outcome in ("resolve", "reject"):
        order = _unique("order")
        handle = await client.service_send(svc.pay, order)
        awakeable_id = None
        with anyio.fail_after(15):
            while awakeable_id is None:
                awakeable_id = await client.object_call(svc.current, order, None)
                await anyio.sleep(0.05)
        if outcome == "resolve":
            await client.resolve_awakeable(awakeable_id, "tx-1")
            assert await handle.attach() == "paid: tx-1"
        else:
            await client.reject_awakeable(awakeable_id, "card stolen")
            assert await handle.attach() == "not paid: card stolen"

    # A workflow: confirmed by its shared handler, or timed out by its durable timer.
    confirmed, lapsed = _unique("wf"), _unique("wf")
    await client.workflow_send(svc.run, confirmed, 30_000)
    await client.workflow_send(svc.run, lapsed, 300)
    await client.workflow_call(svc.click, confirmed, "https://example.com/link")
    assert await client.workflow_attach(svc.run, confirmed) == (
        "confirmed via https://example.com/link"
    )
    assert await client.workflow_attach(svc.run, lapsed) == "timed out"

    # A step that keeps failing gives up after its RunOptions' attempts, as a TerminalError.
    request_id = _unique("req")
    assert await client.service_call(svc.call_partner, request_id) == "gave up after 3 attempts"

    # A call, a send and a delayed send to a virtual object.
    key = _unique("tally")
    assert await client.service_call(svc.spread, key) == 1
    with anyio.fail_after(15):
        while await client.object_call(svc.total, key, None) != 111:
            await anyio.sleep(0.1)
