"""Durable steps end to end: a real restate-server drives our endpoint over HTTP/2.

Every test runs under protocol v5 (endpoint capped at v5), v6 (the server's default) and
v7 (server started with its experimental v7 switch).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from framework._dev.service_process import ServiceProcess
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]

# suffix of the service names -> (app, server fixture, protocol version it must run on)
VERSIONS = {
    "V5": ("app_v5", "restate_server", 5),
    "V6": ("app_v6", "restate_server", 6),
    "V7": ("app_v7", "restate_server_v7", 7),
    # Same services, on a server that suspends at every await and sends no eager
    # state: every resume is a full replay and every state read is lazy.
    "R7": ("app_v7", "restate_server_replaying", 7),
    # Registered for HTTP/1.1: request/response mode instead of a bidi stream.
    "H1": ("app_h1", "restate_server", 6),
}


class Deployment:
    """One protocol version's services, served and registered, plus a way to call them."""

    def __init__(self, suffix: str, server: Any, service: Any, test_dir: Path, version: int):
        self.suffix = suffix
        self.server = server
        self.service = service
        self.dir = test_dir
        self.version = version
        self.http = httpx.Client(base_url=server.ingress_url, timeout=60)

    def call(self, service: str, handler: str, body: Any = None, key: str | None = None) -> Any:
        path = f"/{service}{self.suffix}/" + (f"{key}/" if key is not None else "") + handler
        if body is None:  # a handler without input takes no body and no content type
            return self.http.post(path)
        return self.http.post(
            path, content=json.dumps(body), headers={"content-type": "application/json"}
        )

    def ok(self, service: str, handler: str, body: Any = None, key: str | None = None) -> Any:
        response = self.call(service, handler, body, key)
        assert response.status_code == 200, response.text
        return response.json() if response.content else None

    def invocations(self, where: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.server.query(
            "SELECT id, status, target_handler_name, last_failure, last_failure_error_code, "
            f"pinned_service_protocol_version FROM sys_invocation WHERE {where}"
        )
        return rows


@pytest.fixture(scope="module", params=list(VERSIONS))
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    suffix = request.param
    app_name, server_fixture, version = VERSIONS[suffix]
    suffix = suffix.replace("R", "V")
    server = request.getfixturevalue(server_fixture)
    test_dir = tmp_path_factory.mktemp(f"ledger{request.param}")
    service = ServiceProcess(
        f"tests.e2e_services:{app_name}",
        env={"FRAMEWORK_TEST_DIR": str(test_dir)},
        log_path=test_dir / "service.log",
        cwd=ROOT,
    )
    service.start()
    try:
        server.register(service.url, use_http_11=suffix == "H1")
        deployment = Deployment(suffix, server, service, test_dir, version)
        yield deployment
        deployment.http.close()
    finally:
        service.stop()


def test_greeter_runs_steps_and_negotiates_the_version(deployment: Deployment) -> None:
    text = deployment.ok("Greeter", "greet", "Ann")
    answer, n, uid, rnd, now = text.rsplit(" ", 4)
    assert answer == "<greet Ann>"
    assert 0 <= int(n) <= 10
    assert uuid.UUID(uid).version == 4
    assert 0.0 <= float(rnd) < 1.0
    assert abs(float(now) - time.time()) < 60, "ctx.time() is seconds since the epoch"
    rows = deployment.invocations(f"target_service_name = 'Greeter{deployment.suffix}'")
    assert rows and {r["pinned_service_protocol_version"] for r in rows} == {deployment.version}


def test_step_runs_once_while_handler_is_retried(deployment: Deployment) -> None:
    key = f"once-{uuid.uuid4().hex[:8]}"
    result = deployment.ok("Steps", "once_then_fail_twice", key)
    effects = (deployment.dir / f"{key}.effects").read_text().splitlines()
    assert effects == ["ran"], "the step's closure ran more than once"
    attempts = [
        json.loads(line) for line in (deployment.dir / f"{key}.attempts").read_text().splitlines()
    ]
    assert len(attempts) == 3
    assert attempts[0] == attempts[1] == attempts[2], "uuid/random/time changed across retries"
    assert result == {"effect": "effect done", **attempts[0]}


def test_retry_policy_exhaustion_is_a_catchable_terminal_error(deployment: Deployment) -> None:
    key = f"exhaust-{uuid.uuid4().hex[:8]}"
    result = deployment.ok("Steps", "exhaust_retries", key)
    assert result.startswith("caught: ctx.run 'always fails' gave up after 3 attempts")
    assert "try 3 failed" in result
    tries = (deployment.dir / f"{key}.tries").read_text().splitlines()
    assert len(tries) == 3


def test_terminal_error_is_the_invocation_failure(deployment: Deployment) -> None:
    response = deployment.call("Steps", "terminal", "no teapot today")
    assert response.status_code == 418
    assert "no teapot today" in response.text


def test_virtual_object_state_survives_invocations(deployment: Deployment) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    assert deployment.ok("Counter", "add", 5, key=key) == 5
    assert deployment.ok("Counter", "add", 3, key=key) == 8
    assert deployment.ok("Counter", "get", key=key) == 8
    assert deployment.ok("Counter", "add", 1, key="other-" + key) == 1
    assert deployment.ok("Counter", "keys_and_clear", key=key) == ["other", "value"]
    assert deployment.ok("Counter", "reset", key=key) is None
    assert deployment.ok("Counter", "get", key=key) == 0


def test_request_and_context_misuse(deployment: Deployment) -> None:
    info = deployment.ok("Steps", "request_info")
    assert info["id"].startswith("inv_") and info["has_headers"]
    message = deployment.ok("Steps", "ctx_inside_run")
    assert "inside the ctx.run closure 'outer'" in message


def test_journal_mismatch_is_reported_as_570(deployment: Deployment) -> None:
    key = f"mismatch-{uuid.uuid4().hex[:8]}"
    response = deployment.http.post(
        f"/Steps{deployment.suffix}/changes_step_names/send",
        content=json.dumps(key),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text
    invocation_id = response.json()["invocationId"]

    def failed_with_570() -> list[dict[str, Any]]:
        rows = deployment.invocations(f"id = '{invocation_id}'")
        # The server files it under its own code (RT0016) with our 570 in the message.
        return [r for r in rows if "[570" in (r["last_failure"] or "")]

    rows = wait_until(failed_with_570)
    assert "journal mismatch at command #1" in rows[0]["last_failure"]
    assert "step-1" in rows[0]["last_failure"] and "step-2" in rows[0]["last_failure"]
    deployment.http.close()
    httpx.delete(f"{deployment.server.admin_url}/invocations/{invocation_id}?mode=kill", timeout=10)
    deployment.http = httpx.Client(base_url=deployment.server.ingress_url, timeout=60)


def test_durable_sleep(deployment: Deployment) -> None:
    started = time.monotonic()
    assert deployment.ok("Steps", "nap", 500) == "rested"
    assert time.monotonic() - started >= 0.45


def test_blocking_run_closure_does_not_stall_other_invocations(deployment: Deployment) -> None:
    response = deployment.http.post(
        f"/Steps{deployment.suffix}/sync_run_does_not_block/send",
        content=b"2.0",
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text
    started = time.monotonic()
    deployment.ok("Greeter", "greet", "Bo")
    assert time.monotonic() - started < 1.5, "a blocking ctx.run closure stalled the endpoint"


def test_retryable_error_sets_the_next_retry_delay(deployment: Deployment) -> None:
    started = time.monotonic()
    assert deployment.ok("Steps", "retry_later", f"later-{uuid.uuid4().hex[:8]}") == 2
    assert time.monotonic() - started >= 0.6, "the retry came before retry_after"
