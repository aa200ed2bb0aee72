"""Restate's SDK conformance scenarios, run against our contract services (tests/conformance/)."""

# The services are served in a child process and registered with two servers: one with default
# settings, and one that suspends at every await and sends no eager state (every resume is a
# full replay, every state read lazy); the tests that kill or restart the server, sign requests
# or scope calls get servers of their own in both flavours. The tests drive the services as the
# conformance suite does: through the ingress (calls with an idempotency key, sends, attach)
# and the admin API (cancel, kill, SQL on sys_invocation), and assert what a caller sees.

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import base58
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from framework.testing import HarnessEnvironment, HarnessSession
from tests.conformance.app import SIGNING_KEY_ENV
from tests.waiting import wait_until

APP = "tests.conformance.app:app"
SERVERS = {"default": "restate_server", "replaying": "restate_server_replaying"}
REPLAYING_ENV = {
    "RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s",
    "RESTATE_WORKER__INVOKER__DISABLE_EAGER_STATE": "true",
}
KEY_FILE_ENV = "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"
CALL_TIMEOUT = 30.0
WAIT = 20.0
METADATA = {"key1": "value1", "key2": "value2"}

_NO_BODY = object()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def encoded(value: Any) -> list[int]:
    """A JSON value as the Proxy contract carries messages: bytes as an array of numbers."""
    return list(json.dumps(value).encode())


class Ingress:
    """The ingress and admin API of one server where the conformance services are registered."""

    def __init__(self, name: str, env: HarnessEnvironment) -> None:
        self.name = name
        self.replaying = name == "replaying"
        self.env = env
        self.http = httpx.Client(base_url=env.ingress_url, timeout=CALL_TIMEOUT, trust_env=False)
        self.admin = httpx.Client(base_url=env.admin_api_url, timeout=CALL_TIMEOUT, trust_env=False)

    def close(self) -> None:
        self.http.close()
        self.admin.close()

    # -- the ingress ------------------------------------------------------------------------

    def post(
        self,
        path: str,
        body: Any = _NO_BODY,
        *,
        idempotent: bool = True,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """POST ``path`` with ``idempotency_key``, else (unless not ``idempotent``) a fresh
        one, as the suite's ``idempotentCallOptions`` do."""
        sent = dict(headers or {})
        if idempotency_key is None and idempotent:
            idempotency_key = str(uuid.uuid4())
        if idempotency_key is not None:
            sent["idempotency-key"] = idempotency_key
        content: bytes | None = None
        if isinstance(body, bytes):
            content = body
            sent.setdefault("content-type", "application/octet-stream")
        elif body is not _NO_BODY:
            content = json.dumps(body).encode()
            sent["content-type"] = "application/json"
        return self.http.post(path, content=content, headers=sent, timeout=timeout or CALL_TIMEOUT)

    def ok(self, path: str, body: Any = _NO_BODY, **options: Any) -> Any:
        """POST and expect 200; the decoded JSON answer (None for an empty one)."""
        response = self.post(path, body, **options)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def send(self, path: str, body: Any = _NO_BODY, **options: Any) -> dict[str, Any]:
        """A one-way call of ``path``: the ingress' answer (``invocationId``, ``status``)."""
        response = self.post(f"{path}/send", body, **options)
        assert response.status_code in (200, 202), f"{path}/send: {response.text}"
        answer: dict[str, Any] = response.json()
        assert str(answer["invocationId"]).startswith("inv_"), answer
        return answer

    def attach(self, invocation_id: str) -> httpx.Response:
        """Wait for the invocation to end: its answer as a caller gets it."""
        return self.http.get(f"/restate/invocation/{invocation_id}/attach")

    def result(self, invocation_id: str) -> Any:
        response = self.attach(invocation_id)
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        return response.json() if response.content else None

    def error(self, response: httpx.Response) -> dict[str, Any]:
        """The error body of a failed call (``message``, maybe ``code`` and ``metadata``)."""
        assert response.status_code >= 400, f"{response.status_code} {response.text}"
        body: dict[str, Any] = response.json()
        return body

    # -- the admin API ----------------------------------------------------------------------

    def cancel(self, invocation_id: str) -> None:
        response = self.admin.patch(f"/invocations/{invocation_id}/cancel")
        assert response.status_code in (200, 202), response.text

    def kill(self, invocation_id: str) -> None:
        response = self.admin.patch(f"/invocations/{invocation_id}/kill")
        assert response.status_code in (200, 202), response.text

    def invocation(self, invocation_id: str) -> dict[str, Any] | None:
        assert self.env.server is not None
        rows = self.env.server.query(
            "SELECT id, status, retry_count, last_failure, last_failure_error_code, "
            "completion_result, completion_failure FROM sys_invocation "
            f"WHERE id = '{invocation_id}'"
        )
        return rows[0] if rows else None

    def journal(self, service: str, key: str, handler: str) -> list[str]:
        """The journal entry types of every invocation of ``service/key/handler``."""
        assert self.env.server is not None
        rows = self.env.server.query(
            "SELECT j.entry_type FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
            f"WHERE i.target_service_name = '{service}' AND i.target_service_key = '{key}' "
            f"AND i.target_handler_name = '{handler}'"
        )
        return [str(row["entry_type"]) for row in rows]


@pytest.fixture(scope="module", params=list(SERVERS))
def ingress(request: pytest.FixtureRequest) -> Iterator[Ingress]:
    server = request.getfixturevalue(SERVERS[request.param])
    session = HarnessSession(server=server)  # serves the app; leaves the server running
    try:
        ingress = Ingress(request.param, session.environment(APP))
        try:
            yield ingress
        finally:
            ingress.close()
    finally:
        session.stop()


@pytest.fixture(scope="module", params=list(SERVERS))
def signed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ingress]:
    """The services on a server of their own (for the tests that kill or restart it), which
    signs its requests with an Ed25519 key; the services accept only requests it signed."""
    directory = tmp_path_factory.mktemp(f"conformance-signed-{request.param}")
    private = Ed25519PrivateKey.generate()
    key_file = directory / "private.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    replaying = request.param == "replaying"
    session = HarnessSession(
        server_env={KEY_FILE_ENV: str(key_file), **(REPLAYING_ENV if replaying else {})},
        enable_protocol_v7=replaying,
        log_path=directory / "restate-server.log",
    )
    try:
        session.start()
        service_env = {SIGNING_KEY_ENV: "publickeyv1_" + base58.b58encode(public).decode()}
        ingress = Ingress(request.param, session.environment(APP, service_env=service_env))
        try:
            yield ingress
        finally:
            ingress.close()
    finally:
        session.stop()


@pytest.fixture(scope="module", params=list(SERVERS))
def scoped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ingress]:
    """The services on a server of their own with protocol v7 and virtual queues, where
    calls can carry a scope and a limit key."""
    directory = tmp_path_factory.mktemp(f"conformance-scoped-{request.param}")
    env = {"RESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true"}
    if request.param == "replaying":
        env.update(REPLAYING_ENV)
    session = HarnessSession(
        server_env=env, enable_protocol_v7=True, log_path=directory / "restate-server.log"
    )
    try:
        session.start()
        ingress = Ingress(request.param, session.environment(APP))
        try:
            yield ingress
        finally:
            ingress.close()
    finally:
        session.stop()


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    wait_until(lambda: check() or None, what, timeout)


# -- State: Counter, ListObject, MapObject ------------------------------------------------------


def test_counter_add_get_reset(ingress: Ingress) -> None:
    key = unique("counter")
    assert ingress.ok(f"/Counter/{key}/add", 1) == {"oldValue": 0, "newValue": 1}
    assert ingress.ok(f"/Counter/{key}/add", 2) == {"oldValue": 1, "newValue": 3}
    assert ingress.ok(f"/Counter/{key}/get") == 3
    assert ingress.ok(f"/Counter/{key}/reset") is None
    assert ingress.ok(f"/Counter/{key}/get") == 0
    assert ingress.ok(f"/Counter/{key}/add", 5) == {"oldValue": 0, "newValue": 5}


def test_counter_add_then_fail_keeps_the_state_it_set(ingress: Ingress) -> None:
    key = unique("my-failure-counter")
    failure = ingress.error(ingress.post(f"/Counter/{key}/addThenFail", 1))
    assert key in failure["message"]
    assert ingress.ok(f"/Counter/{key}/get") == 1


def test_list_object_appends_and_clears(ingress: Ingress) -> None:
    key = unique("list")
    for value in ("a", "b", "c"):
        assert ingress.ok(f"/ListObject/{key}/append", value) is None
    assert ingress.ok(f"/ListObject/{key}/get") == ["a", "b", "c"]
    assert ingress.ok(f"/ListObject/{key}/clear") == ["a", "b", "c"]
    assert ingress.ok(f"/ListObject/{key}/get") == []
    assert ingress.ok(f"/ListObject/{key}/clear") == []


def test_map_object_clear_all_clears_only_its_own_keys(ingress: Ingress) -> None:
    name = unique("map")
    ingress.ok(f"/MapObject/{name}/set", {"key": "my-key-0", "value": "my-value-0"})
    ingress.ok(f"/MapObject/{name}/set", {"key": "my-key-1", "value": "my-value-1"})
    ingress.ok(f"/MapObject/{name}1/set", {"key": "my-key-2", "value": "my-value-2"})
    cleared = ingress.ok(f"/MapObject/{name}/clearAll")
    assert sorted(cleared, key=lambda e: e["key"]) == [
        {"key": "my-key-0", "value": "my-value-0"},
        {"key": "my-key-1", "value": "my-value-1"},
    ]
    assert ingress.ok(f"/MapObject/{name}/get", "my-key-0") == ""
    assert ingress.ok(f"/MapObject/{name}/get", "my-key-1") == ""
    assert ingress.ok(f"/MapObject/{name}1/get", "my-key-2") == "my-value-2"


def test_counter_state_survives_a_service_restart(ingress: Ingress) -> None:
    key = unique("restart")
    assert ingress.ok(f"/Counter/{key}/add", 1) == {"oldValue": 0, "newValue": 1}
    service = ingress.env.service
    assert service is not None
    service.stop()
    service.start()
    assert ingress.ok(f"/Counter/{key}/add", 2) == {"oldValue": 1, "newValue": 3}


# -- request signing and the restate-server going away (a server of their own) ------------------


def test_signed_requests_pass_and_unsigned_ones_do_not(signed: Ingress) -> None:
    key = unique("signed")
    assert signed.ok(f"/Counter/{key}/add", 1) == {"oldValue": 0, "newValue": 1}
    assert signed.ok(f"/Counter/{key}/get") == 1
    assert signed.env.deployment_url is not None
    unsigned = httpx.get(f"{signed.env.deployment_url}/discover", timeout=10, trust_env=False)
    assert unsigned.status_code == 401, unsigned.text


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_counter_state_survives_the_server_going_away(signed: Ingress, how: str) -> None:
    key = unique(f"server-{how}")
    assert signed.ok(f"/Counter/{key}/add", 1) == {"oldValue": 0, "newValue": 1}
    server = signed.env.server
    assert server is not None
    if how == "kill":
        server.kill()
        server.start()
    else:
        server.restart()
    idempotency_key = str(uuid.uuid4())

    def second_add() -> Any:
        try:
            response = signed.post(
                f"/Counter/{key}/add", 2, idempotency_key=idempotency_key, timeout=5
            )
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    assert wait_until(second_add, "the second add", timeout=60) == {"oldValue": 1, "newValue": 3}


# -- Proxy: service-to-service calls -------------------------------------------------------------


def test_proxy_call_answers_the_callee_bytes(ingress: Ingress) -> None:
    request = {
        "serviceName": "TestUtilsService",
        "handlerName": "uppercaseEcho",
        "message": encoded("ping"),
    }
    assert ingress.ok("/Proxy/call", request) == encoded("PING")


def test_proxy_call_fails_with_the_callee_failure(ingress: Ingress) -> None:
    failure = {"errorMessage": "proxied failure", "metadata": METADATA}
    request = {
        "serviceName": "Failing",
        "virtualObjectKey": unique("f"),
        "handlerName": "terminallyFailingCall",
        "message": encoded(failure),
    }
    error = ingress.error(ingress.post("/Proxy/call", request))
    assert "proxied failure" in error["message"], error
    assert error.get("metadata") == METADATA, error


def test_proxy_one_way_calls_reach_the_counter(ingress: Ingress) -> None:
    key = unique("one-way")
    request = {
        "serviceName": "Counter",
        "virtualObjectKey": key,
        "handlerName": "add",
        "message": encoded(1),
    }
    ids = {ingress.ok("/Proxy/oneWayCall", request) for _ in range(3)}
    assert len(ids) == 3 and all(i.startswith("inv_") for i in ids), ids
    eventually(lambda: ingress.ok(f"/Counter/{key}/get") == 3, "the counter at 3")


def test_proxy_call_with_idempotency_key_runs_the_callee_once(ingress: Ingress) -> None:
    key, idempotency_key = unique("idem-call"), str(uuid.uuid4())
    request = {
        "serviceName": "Counter",
        "virtualObjectKey": key,
        "handlerName": "add",
        "message": encoded(1),
        "idempotencyKey": idempotency_key,
    }
    for _ in range(2):
        answer = bytes(ingress.ok("/Proxy/call", request))
        assert json.loads(answer) == {"oldValue": 0, "newValue": 1}
    assert ingress.ok(f"/Counter/{key}/get") == 1
    output = ingress.http.get(f"/restate/invocation/Counter/{key}/add/{idempotency_key}/output")
    assert output.status_code == 200, output.text
    assert output.json() == {"oldValue": 0, "newValue": 1}


def test_proxy_one_way_call_with_idempotency_key_runs_the_callee_once(ingress: Ingress) -> None:
    key, idempotency_key = unique("idem-send"), str(uuid.uuid4())
    request = {
        "serviceName": "Counter",
        "virtualObjectKey": key,
        "handlerName": "add",
        "message": encoded(1),
        "idempotencyKey": idempotency_key,
    }
    first = ingress.ok("/Proxy/oneWayCall", request)
    second = ingress.ok("/Proxy/oneWayCall", request)
    assert first == second, "the same idempotency key started a second invocation"
    eventually(lambda: ingress.ok(f"/Counter/{key}/get") == 1, "the counter at 1")
    attached = ingress.http.get(f"/restate/invocation/Counter/{key}/add/{idempotency_key}/attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == {"oldValue": 0, "newValue": 1}
    assert ingress.ok(f"/Counter/{key}/get") == 1


def test_proxy_one_way_call_with_delay_waits_before_enqueueing(ingress: Ingress) -> None:
    key, delay, sends = unique("delayed"), 2.0, 5
    request = {
        "serviceName": "Counter",
        "virtualObjectKey": key,
        "handlerName": "add",
        "message": encoded(1),
        "delayMillis": int(delay * 1000),
    }
    started = time.monotonic()
    for _ in range(sends):
        ingress.ok("/Proxy/oneWayCall", request)
    if time.monotonic() - started < delay * 0.75:
        assert ingress.ok(f"/Counter/{key}/get") == 0, "a delayed call ran at once"
    eventually(lambda: ingress.ok(f"/Counter/{key}/get") == sends, f"the counter at {sends}")
    elapsed = time.monotonic() - started
    # Each delay runs from its own send, not one after the other.
    assert delay <= elapsed < delay * sends, f"{elapsed:.1f}s"


def test_proxy_calls_carry_their_scope_and_limit_key(scoped: Ingress) -> None:
    run = uuid.uuid4().hex[:8]
    scope, limit_key = f"s2s-scope-{run}", f"s2s-limitkey-{run}"
    request = {
        "serviceName": "TestUtilsService",
        "handlerName": "uppercaseEcho",
        "message": encoded("scoped"),
        "scope": scope,
        "limitKey": limit_key,
    }
    assert scoped.ok("/Proxy/call", request) == encoded("SCOPED")
    sent_id = scoped.ok("/Proxy/oneWayCall", request)
    assert scoped.result(sent_id) == "SCOPED"
    assert scoped.env.server is not None
    rows = scoped.env.server.query(
        "SELECT id, scope, limit_key FROM sys_invocation "
        f"WHERE target = 'TestUtilsService/uppercaseEcho' AND scope = '{scope}'"
    )
    assert len(rows) == 2, rows
    assert all(row["limit_key"] == limit_key for row in rows), rows
    assert sent_id in {row["id"] for row in rows}


@pytest.mark.parametrize(
    "one_way",
    [(True, False, False), (False, True, False), (True, True, False)],
    ids=["send-call-call", "call-send-call", "send-send-call"],
)
def test_proxy_many_calls_keep_their_order(
    ingress: Ingress, one_way: tuple[bool, bool, bool]
) -> None:
    key = unique("ordering")
    calls = [
        {
            "proxyRequest": {
                "serviceName": "ListObject",
                "virtualObjectKey": key,
                "handlerName": "append",
                "message": encoded(str(i)),
            },
            "oneWayCall": send,
            "awaitAtTheEnd": not send,
        }
        for i, send in enumerate(one_way)
    ]
    assert ingress.ok("/Proxy/manyCalls", calls) is None
    assert ingress.ok(f"/ListObject/{key}/clear") == ["0", "1", "2"]


# -- Failing: terminal errors, retries, retried steps --------------------------------------------


def test_terminally_failing_call_fails_with_its_message_every_time(ingress: Ingress) -> None:
    for _ in range(3):
        response = ingress.post(
            f"/Failing/{unique('f')}/terminallyFailingCall", {"errorMessage": "my error"}
        )
        assert "my error" in ingress.error(response)["message"]


@pytest.mark.parametrize(
    "handler", ["terminallyFailingCall", "callTerminallyFailingCall", "terminallyFailingSideEffect"]
)
def test_terminal_error_message_and_metadata_reach_the_caller(
    ingress: Ingress, handler: str
) -> None:
    message = f"{handler} failed with metadata"
    for _ in range(2):  # the endpoint stays sound after a failure
        response = ingress.post(
            f"/Failing/{unique('f')}/{handler}", {"errorMessage": message, "metadata": METADATA}
        )
        failure = ingress.error(response)
        assert message in failure["message"], failure
        assert failure.get("metadata") == METADATA, failure


def test_failure_of_a_call_propagates_to_the_caller(ingress: Ingress) -> None:
    response = ingress.post(
        f"/Failing/{unique('f')}/callTerminallyFailingCall", {"errorMessage": "propagated error"}
    )
    assert "propagated error" in ingress.error(response)["message"]


def test_terminal_error_of_a_step_fails_the_invocation(ingress: Ingress) -> None:
    response = ingress.post(
        f"/Failing/{unique('f')}/terminallyFailingSideEffect",
        {"errorMessage": "failed side effect"},
    )
    assert "failed side effect" in ingress.error(response)["message"]


def test_invocation_is_retried_until_it_succeeds(ingress: Ingress) -> None:
    assert ingress.ok(f"/Failing/{unique('f')}/failingCallWithEventualSuccess") == 4


def test_step_is_retried_until_it_succeeds(ingress: Ingress) -> None:
    attempts = ingress.ok(f"/Failing/{unique('f')}/sideEffectSucceedsAfterGivenAttempts", 3)
    assert attempts >= 3


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_step_stops_after_its_retry_policy_attempts(ingress: Ingress, max_attempts: int) -> None:
    path = f"/Failing/{unique('f')}/sideEffectFailsAfterGivenAttempts"
    assert ingress.ok(path, max_attempts) == max_attempts


# -- BlockAndWaitWorkflow -----------------------------------------------------------------------


def test_workflow_promise_unblocks_run_and_keeps_its_output(ingress: Ingress) -> None:
    workflow_id = unique("wf")
    base = f"/BlockAndWaitWorkflow/{workflow_id}"
    sent = ingress.send(f"{base}/run", "Francesco", idempotent=False)
    assert sent["status"] == "Accepted", sent
    eventually(lambda: bool(ingress.ok(f"{base}/getState", idempotent=False)), "the workflow state")
    assert ingress.ok(f"{base}/getState") == "Francesco"
    running = ingress.http.get(f"/restate/workflow/BlockAndWaitWorkflow/{workflow_id}/output")
    assert running.status_code == 470, f"output of a running workflow: {running.text}"
    assert ingress.ok(f"{base}/unblock", "Till") is None
    attached = ingress.http.get(f"/restate/workflow/BlockAndWaitWorkflow/{workflow_id}/attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == "Till"
    output = ingress.http.get(f"/restate/workflow/BlockAndWaitWorkflow/{workflow_id}/output")
    assert output.status_code == 200, output.text
    assert output.json() == "Till"
    again = ingress.send(f"{base}/run", "Francesco", idempotent=False)
    assert again["status"] == "PreviouslyAccepted", again
    assert again["invocationId"] == sent["invocationId"]
    assert ingress.result(sent["invocationId"]) == "Till"


def test_workflow_promise_resolved_before_run_starts(ingress: Ingress) -> None:
    base = f"/BlockAndWaitWorkflow/{unique('wf')}"
    assert ingress.ok(f"{base}/getState", idempotent=False) is None
    assert ingress.ok(f"{base}/unblock", "early", idempotent=False) is None
    assert ingress.ok(f"{base}/run", "late", idempotent=False) == "early"
    assert ingress.ok(f"{base}/getState", idempotent=False) == "late"


# -- AwakeableHolder, CancelTest, KillTest --------------------------------------------------------


def test_awakeable_holder_without_awakeable(ingress: Ingress) -> None:
    key = unique("holder")
    assert ingress.ok(f"/AwakeableHolder/{key}/hasAwakeable") is False
    ingress.error(ingress.post(f"/AwakeableHolder/{key}/unlock", "nothing"))


def _unlock_when_held(ingress: Ingress, key: str) -> None:
    eventually(
        lambda: ingress.ok(f"/AwakeableHolder/{key}/hasAwakeable", idempotent=False) is True,
        "the awakeable registered with the AwakeableHolder",
    )
    assert ingress.ok(f"/AwakeableHolder/{key}/unlock", "cancel") is None


# What the journal of CancelTestBlockingService/block shows once it blocks on the operation.
BLOCKED_ON = {
    "CALL": ("Command: Call", 2),  # the call to AwakeableHolder/hold, then the one to itself
    "SLEEP": ("Command: Sleep", 1),
    "AWAKEABLE": ("Notification: Signal", 1),  # the first awakeable completed
}


def _blocked_on(ingress: Ingress, key: str, operation: str) -> None:
    entry, count = BLOCKED_ON[operation]
    eventually(
        lambda: ingress.journal("CancelTestBlockingService", key, "block").count(entry) >= count,
        f"block waiting on its {operation}",
    )


def _blocking_service_unlocked(ingress: Ingress, key: str) -> None:
    response = ingress.post(f"/CancelTestBlockingService/{key}/isUnlocked", timeout=WAIT)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("operation", ["CALL", "SLEEP", "AWAKEABLE"])
def test_cancel_from_the_admin_api_reaches_the_blocked_operation(
    ingress: Ingress, operation: str
) -> None:
    key = unique("cancel-admin")
    invocation_id = ingress.send(f"/CancelTestRunner/{key}/startTest", operation)["invocationId"]
    _unlock_when_held(ingress, key)
    _blocked_on(ingress, key, operation)
    ingress.cancel(invocation_id)
    assert ingress.result(invocation_id) is None, "startTest did not catch its cancellation"
    assert ingress.ok(f"/CancelTestRunner/{key}/verifyTest") is True
    _blocking_service_unlocked(ingress, key)


@pytest.mark.parametrize("operation", ["CALL", "SLEEP", "AWAKEABLE"])
def test_cancel_from_a_context_reaches_the_blocked_operation(
    ingress: Ingress, operation: str
) -> None:
    key, idempotency_key = unique("cancel-ctx"), str(uuid.uuid4())
    request = {
        "serviceName": "CancelTestRunner",
        "virtualObjectKey": key,
        "handlerName": "startTest",
        "message": encoded(operation),
        "idempotencyKey": idempotency_key,
    }
    invocation_id = ingress.ok("/Proxy/oneWayCall", request)
    _unlock_when_held(ingress, key)
    _blocked_on(ingress, key, operation)
    assert ingress.ok("/TestUtilsService/cancelInvocation", invocation_id) is None
    assert ingress.result(invocation_id) is None, "startTest did not catch its cancellation"
    assert ingress.ok(f"/CancelTestRunner/{key}/verifyTest") is True
    _blocking_service_unlocked(ingress, key)


def test_kill_ends_the_whole_call_tree(ingress: Ingress) -> None:
    key = unique("kill")
    invocation_id = ingress.send(f"/KillTestRunner/{key}/startCallTree")["invocationId"]
    _unlock_when_held(ingress, key)
    eventually(  # the call to AwakeableHolder/hold, then the one to itself
        lambda: (
            ingress.journal("KillTestSingleton", key, "recursiveCall").count("Command: Call") >= 2
        ),
        "recursiveCall calling itself",
    )
    ingress.kill(invocation_id)
    response = ingress.post(f"/KillTestSingleton/{key}/isUnlocked", timeout=WAIT)
    assert response.status_code == 200, response.text
    _assert_killed(ingress, invocation_id)


def _assert_killed(ingress: Ingress, invocation_id: str) -> None:
    response = ingress.attach(invocation_id)
    assert response.status_code == 409, response.text
    assert "killed" in ingress.error(response)["message"]


# -- NonDeterministic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        "eitherSleepOrCall",
        "callDifferentMethod",
        "backgroundInvokeWithDifferentTargets",
        "setDifferentKey",
    ],
)
def test_a_different_step_on_retry_is_a_journal_mismatch(ingress: Ingress, handler: str) -> None:
    key = unique(handler)
    assert ingress.ok(f"/Counter/{key}/add", 1) == {"oldValue": 0, "newValue": 1}
    invocation_id = ingress.send(f"/NonDeterministic/{key}/{handler}")["invocationId"]

    def mismatch() -> dict[str, Any] | None:
        row = ingress.invocation(invocation_id)
        failure = str((row or {}).get("last_failure") or "")
        return row if "570" in failure and "mismatch" in failure.lower() else None

    row = wait_until(mismatch, f"a journal mismatch of {handler} in sys_invocation")
    assert row["last_failure_error_code"] == "RT0016", row  # restate's code for a mismatch
    assert row["status"] in ("backing-off", "paused", "running"), row
    ingress.kill(invocation_id)
    _assert_killed(ingress, invocation_id)
    time.sleep(0.2)  # a send the handler made past the mismatch would land by now
    assert ingress.ok(f"/Counter/{key}/get") == 1, "the handler went on past the mismatch"


# -- TestUtilsService ---------------------------------------------------------------------------


def test_echo_and_uppercase_echo(ingress: Ingress) -> None:
    assert ingress.ok("/TestUtilsService/echo", "Hello, world") == "Hello, world"
    assert ingress.ok("/TestUtilsService/uppercaseEcho", "ping") == "PING"


def test_echo_headers_passes_ingress_headers_through(ingress: Ingress) -> None:
    headers = ingress.ok(
        "/TestUtilsService/echoHeaders", headers={"x-my-custom-header": "x-my-custom-value"}
    )
    assert headers.get("x-my-custom-header") == "x-my-custom-value", headers


def test_raw_echo_returns_the_same_bytes(ingress: Ingress) -> None:
    for payload in (os.urandom(100), b""):
        response = ingress.post("/TestUtilsService/rawEcho", payload)
        assert response.status_code == 200, response.text
        assert response.content == payload


def test_sleep_concurrently_waits_for_the_longest_timer(ingress: Ingress) -> None:
    started = time.monotonic()
    assert ingress.ok("/TestUtilsService/sleepConcurrently", [100, 300, 50]) is None
    assert time.monotonic() - started >= 0.3


def test_count_executed_side_effects(ingress: Ingress) -> None:
    # On the replaying server the last attempt replays every step from the journal (none of
    # them runs again); on the default one the single attempt runs all three.
    expected = 0 if ingress.replaying else 3
    assert ingress.ok("/TestUtilsService/countExecutedSideEffects", 3) == expected


# -- Signals (VirtualObjectCommandInterpreter + TestUtilsService) ---------------------------------


def _interpret(ingress: Ingress, key: str, *commands: dict[str, Any]) -> httpx.Response:
    return ingress.post(
        f"/VirtualObjectCommandInterpreter/{key}/interpretCommands", {"commands": list(commands)}
    )


def _send_commands(ingress: Ingress, key: str, *commands: dict[str, Any]) -> str:
    path = f"/VirtualObjectCommandInterpreter/{key}/interpretCommands"
    invocation_id: str = ingress.send(path, {"commands": list(commands)})["invocationId"]
    return invocation_id


def _signal(ingress: Ingress, invocation_id: str, name: str, value: str) -> None:
    request = {"invocationId": invocation_id, "signalName": name, "value": value}
    assert ingress.ok("/TestUtilsService/resolveSignal", request) is None


def _reject_signal(ingress: Ingress, invocation_id: str, name: str, reason: str) -> None:
    request = {"invocationId": invocation_id, "signalName": name, "reason": reason}
    assert ingress.ok("/TestUtilsService/rejectSignal", request) is None


def _signals(*names: str) -> list[dict[str, Any]]:
    return [{"type": "createSignal", "signalName": name} for name in names]


def test_signal_resolved(ingress: Ingress) -> None:
    awaited = {"type": "awaitOne", "command": _signals("mysignal")[0]}
    invocation_id = _send_commands(ingress, unique("sig"), awaited)
    _signal(ingress, invocation_id, "mysignal", "hello")
    assert ingress.result(invocation_id) == "hello"


def test_signal_sent_before_the_handler_awaits_it(ingress: Ingress) -> None:
    invocation_id = _send_commands(
        ingress,
        unique("sig"),
        {"type": "awaitOne", "command": _sleep(500)},
        {"type": "awaitOne", "command": _signals("early")[0]},
    )
    _signal(ingress, invocation_id, "early", "was waiting")  # while the handler sleeps
    assert ingress.result(invocation_id) == "was waiting"


def test_signal_rejected_is_a_terminal_error(ingress: Ingress) -> None:
    awaited = {"type": "awaitOne", "command": _signals("mysignal")[0]}
    invocation_id = _send_commands(ingress, unique("sig"), awaited)
    _reject_signal(ingress, invocation_id, "mysignal", "boom")
    assert "boom" in ingress.error(ingress.attach(invocation_id))["message"]


def test_signals_first_successful_or_all_failed(ingress: Ingress) -> None:
    command = {"type": "awaitAnySuccessful", "commands": _signals("sig0", "sig1", "sig2")}
    invocation_id = _send_commands(ingress, unique("sig"), command)
    _reject_signal(ingress, invocation_id, "sig0", "fail0")
    _reject_signal(ingress, invocation_id, "sig2", "fail2")
    _signal(ingress, invocation_id, "sig1", "success1")
    assert ingress.result(invocation_id) == "success1"


def test_signals_all_successful_or_first_failed(ingress: Ingress) -> None:
    command = {
        "type": "awaitAllSucceededOrFirstFailed",
        "commands": _signals("sig0", "sig1", "sig2"),
    }
    invocation_id = _send_commands(ingress, unique("sig"), command)
    for i in range(3):
        _signal(ingress, invocation_id, f"sig{i}", f"val{i}")
    assert ingress.result(invocation_id) == "val0|val1|val2"


def test_signals_all_successful_or_first_failed_fails_on_a_rejection(ingress: Ingress) -> None:
    command = {"type": "awaitAllSucceededOrFirstFailed", "commands": _signals("sig0", "sig1")}
    invocation_id = _send_commands(ingress, unique("sig"), command)
    _reject_signal(ingress, invocation_id, "sig1", "rejected1")  # sig0 never arrives
    assert "rejected1" in ingress.error(ingress.attach(invocation_id))["message"]


def test_signals_all_completed(ingress: Ingress) -> None:
    command = {"type": "awaitAllCompleted", "commands": _signals("sig0", "sig1", "sig2")}
    invocation_id = _send_commands(ingress, unique("sig"), command)
    _signal(ingress, invocation_id, "sig0", "val0")
    _reject_signal(ingress, invocation_id, "sig1", "err1")
    _signal(ingress, invocation_id, "sig2", "val2")
    assert ingress.result(invocation_id) == "ok:val0|err:err1|ok:val2"


def test_signals_first_completed(ingress: Ingress) -> None:
    command = {"type": "awaitAny", "commands": _signals("sig0", "sig1", "sig2")}
    invocation_id = _send_commands(ingress, unique("sig"), command)
    _signal(ingress, invocation_id, "sig1", "first")
    assert ingress.result(invocation_id) == "first"


# -- Combinators and timers (VirtualObjectCommandInterpreter) ------------------------------------


def _awakeable(key: str) -> dict[str, Any]:
    return {"type": "createAwakeable", "awakeableKey": key}


def _sleep(millis: int) -> dict[str, Any]:
    return {"type": "sleep", "timeoutMillis": millis}


def _run_fails(reason: str) -> dict[str, Any]:
    return {"type": "runThrowTerminalException", "reason": reason}


def _run_returns(value: str) -> dict[str, Any]:
    return {"type": "runReturns", "value": value}


def test_await_any_awakeable_or_timeout(ingress: Ingress) -> None:
    command = {"type": "awaitAny", "commands": [_awakeable("awk1"), _sleep(100)]}
    response = _interpret(ingress, unique("interp"), command)
    assert response.status_code == 200, response.text
    assert response.json() == "sleep"


def test_await_awakeable_or_timeout_fails_with_await_timeout(ingress: Ingress) -> None:
    command = {
        "type": "awaitAwakeableOrTimeout",
        "awakeableKey": "should-timeout-awk",
        "timeoutMillis": 100,
    }
    response = _interpret(ingress, unique("interp"), command)
    assert "await-timeout" in ingress.error(response)["message"]


def test_await_awakeable_or_timeout_resolved_in_time(ingress: Ingress) -> None:
    key = unique("interp")
    base = f"/VirtualObjectCommandInterpreter/{key}"
    command = {"type": "awaitAwakeableOrTimeout", "awakeableKey": "awk", "timeoutMillis": 60_000}
    invocation_id = _send_commands(ingress, key, command)
    eventually(
        lambda: ingress.ok(f"{base}/hasAwakeable", "awk", idempotent=False) is True,
        "the awakeable created",
    )
    ingress.ok(f"{base}/resolveAwakeable", {"awakeableKey": "awk", "value": "in time"})
    assert ingress.result(invocation_id) == "in time"


def test_first_successful_awakeable_wins(ingress: Ingress) -> None:
    key = unique("interp")
    base = f"/VirtualObjectCommandInterpreter/{key}"
    command = {
        "type": "awaitAnySuccessful",
        "commands": [
            _awakeable("awk0"),
            _run_fails("run0"),
            _awakeable("awk1"),
            _run_fails("run1"),
            _awakeable("awk2"),
            _run_fails("run2"),
        ],
    }
    invocation_id = _send_commands(ingress, key, command)
    eventually(
        lambda: ingress.ok(f"{base}/hasAwakeable", "awk2", idempotent=False) is True,
        "awakeable awk2 created",
    )
    assert ingress.ok(f"{base}/hasAwakeable", "awk0") is True
    assert ingress.ok(f"{base}/hasAwakeable", "awk1") is True
    assert ingress.ok(f"{base}/hasAwakeable", "awk9") is False
    ingress.ok(f"{base}/rejectAwakeable", {"awakeableKey": "awk2", "reason": "fail"})
    ingress.ok(f"{base}/resolveAwakeable", {"awakeableKey": "awk1", "value": "awk1-result"})
    assert ingress.result(invocation_id) == "awk1-result"
    assert ingress.ok(f"{base}/getResults") == ["awk1-result"]


def test_resolving_an_awakeable_not_created_is_an_error(ingress: Ingress) -> None:
    base = f"/VirtualObjectCommandInterpreter/{unique('interp')}"
    response = ingress.post(f"{base}/resolveAwakeable", {"awakeableKey": "nope", "value": "x"})
    ingress.error(response)
    response = ingress.post(f"{base}/rejectAwakeable", {"awakeableKey": "nope", "reason": "x"})
    ingress.error(response)


def test_run_wins_the_race_against_an_unresolved_signal(ingress: Ingress) -> None:
    command = {
        "type": "awaitFirstCompleted",
        "commands": [*_signals("sig"), _run_returns("runval")],
    }
    response = _interpret(ingress, unique("interp"), command)
    assert response.status_code == 200, response.text
    assert response.json() == "runval"


def test_await_any_fails_when_the_first_to_complete_failed(ingress: Ingress) -> None:
    command = {"type": "awaitAny", "commands": [*_signals("sig"), _run_fails("lost the race")]}
    failure = ingress.error(_interpret(ingress, unique("interp"), command))
    assert "lost the race" in failure["message"], failure


def test_failed_run_is_skipped_for_the_signal(ingress: Ingress) -> None:
    command = {
        "type": "awaitFirstSucceededOrAllFailed",
        "commands": [_run_fails("fail"), *_signals("sig")],
    }
    invocation_id = _send_commands(ingress, unique("interp"), command)
    _signal(ingress, invocation_id, "sig", "sigval")
    assert ingress.result(invocation_id) == "sigval"


def test_all_failed_is_a_terminal_error(ingress: Ingress) -> None:
    command = {
        "type": "awaitFirstSucceededOrAllFailed",
        "commands": [_run_fails("fail-a"), _run_fails("fail-b")],
    }
    failure = ingress.error(_interpret(ingress, unique("interp"), command))
    assert "fail-" in failure["message"], failure


def test_run_and_signal_both_succeed(ingress: Ingress) -> None:
    command = {
        "type": "awaitAllSucceededOrFirstFailed",
        "commands": [_run_returns("runval"), *_signals("sig")],
    }
    invocation_id = _send_commands(ingress, unique("interp"), command)
    _signal(ingress, invocation_id, "sig", "sigval")
    assert ingress.result(invocation_id) == "runval|sigval"


def test_all_completed_with_run_signal_and_failed_run(ingress: Ingress) -> None:
    command = {
        "type": "awaitAllCompleted",
        "commands": [_run_returns("runval"), *_signals("sig"), _run_fails("fail")],
    }
    invocation_id = _send_commands(ingress, unique("interp"), command)
    _signal(ingress, invocation_id, "sig", "sigval")
    assert ingress.result(invocation_id) == "ok:runval|ok:sigval|err:fail"


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_sleep_survives_the_service_going_away(ingress: Ingress, how: str) -> None:
    duration = 2.0
    started = time.monotonic()
    command = {"type": "awaitOne", "command": _sleep(int(duration * 1000))}
    invocation_id = _send_commands(ingress, unique("nap"), command)
    time.sleep(duration / 3)
    service = ingress.env.service
    assert service is not None
    if how == "kill":
        service.kill()
    else:
        service.stop()
    service.start()
    assert ingress.result(invocation_id) == "sleep"
    assert time.monotonic() - started >= duration


def test_sleep_lasts_at_least_its_duration(ingress: Ingress) -> None:
    started = time.monotonic()
    response = _interpret(ingress, unique("interp"), {"type": "awaitOne", "command": _sleep(200)})
    assert response.status_code == 200, response.text
    assert response.json() == "sleep"
    assert time.monotonic() - started >= 0.2


def test_many_sleeps(ingress: Ingress) -> None:
    # As the suite's manySleeps: 50 invocations at once, each awaiting 20 timers of 10-50 ms.
    durations = random.Random(7)
    commands = [
        {
            "type": "awaitAllCompleted",
            "commands": [_sleep(durations.randint(10, 50)) for _ in range(20)],
        }
        for _ in range(50)
    ]
    ids = [_send_commands(ingress, unique("sleeps"), command) for command in commands]
    for invocation_id in ids:
        assert ingress.result(invocation_id) == "|".join(["ok:sleep"] * 20)


def test_commands_record_their_results_in_order(ingress: Ingress) -> None:
    key = unique("interp")
    base = f"/VirtualObjectCommandInterpreter/{key}"
    unset = f"CONFORMANCE_UNSET_{uuid.uuid4().hex}"
    commands: list[dict[str, Any]] = [
        {"type": "awaitOne", "command": _sleep(10)},
        {"type": "awaitOne", "command": _run_returns("ran")},
        {"type": "awaitAny", "commands": [_awakeable("late"), _sleep(10)]},
        {"type": "getEnvVariable", "envName": unset},
        {"type": "awaitOne", "command": _run_returns("last")},
    ]
    response = _interpret(ingress, key, *commands)
    assert response.status_code == 200, response.text
    assert response.json() == "last"
    assert ingress.ok(f"{base}/getResults") == ["sleep", "ran", "sleep", "", "last"]
    assert ingress.ok(f"{base}/hasAwakeable", "late") is True
    response = _interpret(ingress, key, {"type": "getEnvVariable", "envName": "PATH"})
    assert response.status_code == 200 and response.json(), response.text
    assert len(ingress.ok(f"{base}/getResults")) == 6


def test_awakeables_resolved_and_rejected_from_outside_and_by_commands(ingress: Ingress) -> None:
    # The shared handlers complete the awakeable an interpretCommands of the same key awaits;
    # the commands of a later invocation complete those again (the awaits are over: no effect
    # but an empty result each).
    key = unique("interp")
    base = f"/VirtualObjectCommandInterpreter/{key}"
    waiting = _send_commands(ingress, key, {"type": "awaitOne", "command": _awakeable("a")})
    eventually(
        lambda: ingress.ok(f"{base}/hasAwakeable", "a", idempotent=False) is True,
        "awakeable a created",
    )
    ingress.ok(f"{base}/resolveAwakeable", {"awakeableKey": "a", "value": "from outside"})
    assert ingress.result(waiting) == "from outside"
    failing = _send_commands(ingress, key, {"type": "awaitOne", "command": _awakeable("b")})
    eventually(
        lambda: ingress.ok(f"{base}/hasAwakeable", "b", idempotent=False) is True,
        "awakeable b created",
    )
    ingress.ok(f"{base}/rejectAwakeable", {"awakeableKey": "b", "reason": "rejected b"})
    assert "rejected b" in ingress.error(ingress.attach(failing))["message"]
    response = _interpret(
        ingress,
        key,
        {"type": "resolveAwakeable", "awakeableKey": "a", "value": "again"},
        {"type": "rejectAwakeable", "awakeableKey": "b", "reason": "again"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == ""
    assert ingress.ok(f"{base}/getResults") == ["from outside", "", ""]


# -- many callers at once (the suite runs its scenarios concurrently) -----------------------------


def test_scenarios_run_concurrently(ingress: Ingress) -> None:
    def count() -> object:
        key = unique("busy-counter")
        return [ingress.ok(f"/Counter/{key}/add", 1)["newValue"] for _ in range(5)]

    def order() -> object:
        key = unique("busy-list")
        calls = [
            {
                "proxyRequest": {
                    "serviceName": "ListObject",
                    "virtualObjectKey": key,
                    "handlerName": "append",
                    "message": encoded(str(i)),
                },
                "oneWayCall": i % 2 == 0,
                "awaitAtTheEnd": i % 2 == 1,
            }
            for i in range(6)
        ]
        ingress.ok("/Proxy/manyCalls", calls)
        return ingress.ok(f"/ListObject/{key}/get")

    def race() -> object:
        command = {"type": "awaitAny", "commands": [_awakeable("never"), _sleep(50)]}
        return _interpret(ingress, unique("busy-interp"), command).json()

    def signal() -> object:
        awaited = {"type": "awaitOne", "command": _signals("go")[0]}
        invocation_id = _send_commands(ingress, unique("busy-sig"), awaited)
        _signal(ingress, invocation_id, "go", "went")
        return ingress.result(invocation_id)

    expected: dict[Callable[[], object], object] = {
        count: [1, 2, 3, 4, 5],
        order: [str(i) for i in range(6)],
        race: "sleep",
        signal: "went",
    }
    with ThreadPoolExecutor(max_workers=24) as pool:
        running = [(scenario, pool.submit(scenario)) for _ in range(12) for scenario in expected]
        for scenario, future in running:
            assert future.result(timeout=60) == expected[scenario], scenario.__name__
