"""The test harness (framework.testing), used the way a user's test suite would use it.

Each ``create_test_harness`` starts its own restate-server (about half a second) and serves
tests/client_services.py: in this process for the app object, in a child process for the
``"module:attribute"`` string. The pytest fixture shares one server for the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from framework import HttpError, create_test_harness, test_harness
from framework._devserver import RestateServerError, live_processes, port_is_free
from framework.testing import HarnessEnvironment
from tests import client_services as svc

# The fixtures `restate_test_harness` and `restate_harness_session` come from the plugin,
# loaded by tests/conftest.py as a user's conftest.py would load it.

pytestmark = pytest.mark.anyio

APP_REF = "tests.client_services:app"


async def wait_for(
    env: HarnessEnvironment,
    invocation_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll the invocation's sys_invocation row until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    row: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        row = await env.invocation(invocation_id)
        if row is not None and predicate(row):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last row: {row}")


def _own_children() -> set[int]:
    return {pid for child in live_processes() if (pid := child.pid) is not None}


async def test_an_app_object_served_in_process() -> None:
    before = _own_children()
    async with create_test_harness(svc.app) as env:
        assert env.ingress_url.startswith("http://127.0.0.1:")
        assert env.admin_api_url.startswith("http://127.0.0.1:")
        assert env.service is None, "an app object is served in this process"
        assert await env.client.service_call(svc.greet, "Ann") == "Hello, Ann!"
        profile = await env.client.service_call(svc.profile, svc.Person("Ann", 30))
        assert profile == svc.Profile(greeting="Hi Ann", adult=True, tags=["ann"])
        # Without always_replay the handler does not suspend at its short sleep, so nothing
        # replays and its non-determinism goes unnoticed.
        assert await env.client.service_call(svc.nondeterministic, None) == "done"
        # Without disable_retries a failing handler is retried.
        handle = await env.client.service_send(svc.boom, None)
        row = await wait_for(
            env, handle.invocation_id, lambda r: (r["retry_count"] or 0) >= 2, "two retries"
        )
        assert row["last_failure"].startswith("[500") and "boom" in row["last_failure"], row
        await env.kill_invocation(handle.invocation_id)
        server, deployment = env.server, env.deployment_url
        assert server is not None and deployment is not None
    assert server.pid is None, "the server still runs"
    assert port_is_free(int(deployment.rsplit(":", 1)[1])), "the app is still served"
    assert _own_children() == before


async def test_always_replay_catches_a_non_deterministic_handler() -> None:
    # A "module:attribute" app is served in a child process.
    async with create_test_harness(APP_REF, always_replay=True) as env:
        assert env.service is not None and env.service.pid is not None
        # Deterministic handlers still work when every await suspends and replays.
        assert await env.client.service_call(svc.slow, 20) == 20
        key = f"k{time.time_ns()}"
        assert await env.client.object_call(svc.add, key, 2) == 2
        assert await env.client.object_call(svc.add, key, 3) == 5
        handle = await env.client.service_send(svc.nondeterministic, None)
        row = await wait_for(
            env,
            handle.invocation_id,
            lambda r: str(r["last_failure"]).startswith("[570"),
            "a journal mismatch (570)",
        )
        assert "journal mismatch" in row["last_failure"], row
        assert row["status"] != "completed", "the invocation should keep failing"
        await env.kill_invocation(handle.invocation_id)
        child = env.service
    assert child.pid is None, "the service process still runs"


async def test_disable_retries_fails_a_failing_handler_at_once() -> None:
    async with create_test_harness(svc.app, disable_retries=True) as env:
        started = time.monotonic()
        with pytest.raises(HttpError) as failed:
            await env.client.service_call(svc.boom, None)
        assert failed.value.status_code == 500
        assert "boom" in failed.value.message
        assert time.monotonic() - started < 5
        [row] = await env.query(
            "SELECT status, completion_result, completion_failure FROM sys_invocation "
            "WHERE target = 'ClientFlaky/boom'"
        )
        assert row["status"] == "completed" and row["completion_result"] == "failure", row


def test_the_official_sync_harness_with_both_switches() -> None:
    with test_harness(svc.app, always_replay=True, disable_retries=True) as harness:
        with harness.ingress_client() as http:
            assert http.post("/ClientGreeter/greet", json="Ann").json() == "Hello, Ann!"
            answer = http.post("/ClientFlaky/nondeterministic")
        assert answer.status_code == 570, answer.text
        assert "journal mismatch" in answer.json()["message"]


async def test_a_wrong_app_fails_without_leaving_processes() -> None:
    before = _own_children()
    with pytest.raises(TypeError, match="serves an ASGI app"):
        async with create_test_harness(42):  # type: ignore[arg-type]
            pass
    with pytest.raises(RestateServerError, match="exited with code"):
        async with create_test_harness("tests.no_such_module:app"):
            pass
    assert _own_children() == before


# -- the pytest plugin -----------------------------------------------------------------------


async def test_the_fixture_serves_an_app_against_the_session_server(
    restate_test_harness: Callable[..., HarnessEnvironment],
) -> None:
    env = restate_test_harness(svc.app)
    assert await env.client.service_call(svc.greet, "Fix") == "Hello, Fix!"
    again = restate_test_harness(svc.app)
    assert again.deployment_url == env.deployment_url, "served twice in one session"
    assert again.server is env.server


def test_the_fixture_client_works_from_a_sync_test(
    restate_test_harness: Callable[..., HarnessEnvironment],
) -> None:
    env = restate_test_harness(svc.app)
    # The fixture's client opens a connection per request, so any event loop can use it.
    assert asyncio.run(env.client.service_call(svc.greet, "One")) == "Hello, One!"
    assert asyncio.run(env.client.service_call(svc.greet, "Two")) == "Hello, Two!"
