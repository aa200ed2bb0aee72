"""The whole context API end to end: calls, sends, awakeables, promises, signals, combinators,
cancellation and the replay-aware logger, through a real restate-server.

Every test runs twice: on a server with default settings (protocol v6) and on a v7 server that
suspends at every await that is not complete and sends no eager state, so every feature is also
proven through full replays. The services are in tests/e2e_context_services.py; what their side
effects did is read back from ledger files in the deployment's $FRAMEWORK_TEST_DIR.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.e2e_context_services:app"

# configuration name -> server fixture
CONFIGS = {"default": "restate_server", "replaying": "restate_server_replaying"}

T = TypeVar("T")
_NO_BODY = object()


class Deployment:
    """The context services served in a child process and registered with one server."""

    def __init__(
        self, config: str, server: RestateServer, service: ServiceProcess, test_dir: Path
    ) -> None:
        self.config = config
        self.server = server
        self.service = service
        self.dir = test_dir
        self.http = httpx.Client(base_url=server.ingress_url, timeout=30)

    # -- the ingress -------------------------------------------------------------------------

    def post(
        self, path: str, body: Any = _NO_BODY, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        if body is _NO_BODY:  # a handler without input takes no body and no content type
            return self.http.post(path, headers=headers)
        return self.http.post(
            path,
            content=json.dumps(body),
            headers={"content-type": "application/json", **(headers or {})},
        )

    def ok(self, path: str, body: Any = _NO_BODY) -> Any:
        """Call and expect 200; return the decoded JSON answer."""
        response = self.post(path, body)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def send(self, path: str, body: Any = _NO_BODY) -> str:
        """One-way call (``path`` + ``/send``); return the invocation id."""
        response = self.post(f"{path}/send", body)
        assert response.status_code in (200, 202), f"{path}/send: {response.text}"
        invocation_id: str = response.json()["invocationId"]
        assert invocation_id.startswith("inv_")
        return invocation_id

    def attach(self, invocation_id: str) -> httpx.Response:
        """Wait for the invocation to end; its answer as the ingress gives it."""
        return self.http.get(f"/restate/invocation/{invocation_id}/attach", timeout=30)

    def result(self, invocation_id: str) -> Any:
        response = self.attach(invocation_id)
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        return response.json() if response.content else None

    # -- the admin API -----------------------------------------------------------------------

    def cancel(self, invocation_id: str) -> None:
        response = httpx.patch(
            f"{self.server.admin_url}/invocations/{invocation_id}/cancel", timeout=10
        )
        assert response.status_code in (200, 202), response.text

    def invocation(self, invocation_id: str) -> dict[str, Any]:
        rows = self.server.query(
            "SELECT id, status, target_service_name, target_handler_name, invoked_by_id, "
            "completion_result, completion_failure FROM sys_invocation "
            f"WHERE id = '{invocation_id}'"
        )
        assert len(rows) == 1, f"no row for {invocation_id} in sys_invocation"
        return rows[0]

    def journal_has(self, invocation_id: str, entry: str) -> bool:
        """Whether the invocation's journal has an entry whose type mentions ``entry``."""
        rows = self.server.query(f"SELECT entry_type FROM sys_journal WHERE id = '{invocation_id}'")
        return any(entry.lower() in str(r["entry_type"]).lower() for r in rows)

    # -- ledgers -----------------------------------------------------------------------------

    def ledger(self, name: str) -> list[str]:
        path = self.dir / name
        return path.read_text().splitlines() if path.exists() else []

    def wait_ledger(self, name: str, lines: int = 1, timeout: float = 20.0) -> list[str]:
        """The ledger ``name`` once it has at least ``lines`` lines."""
        return wait_until(
            lambda: ((found := self.ledger(name)) and len(found) >= lines and found) or None,
            f"{lines} line(s) in the ledger {name} (has {self.ledger(name)})",
            timeout,
        )


@pytest.fixture(scope="module", params=list(CONFIGS))
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    config: str = request.param
    server: RestateServer = request.getfixturevalue(CONFIGS[config])
    test_dir = tmp_path_factory.mktemp(f"ctx-{config}")
    service = ServiceProcess(
        APP,
        env={"FRAMEWORK_TEST_DIR": str(test_dir)},
        log_path=test_dir / "service.log",
        cwd=ROOT,
    )
    service.start()
    try:
        server.register(service.url)
        deployment = Deployment(config, server, service, test_dir)
        try:
            yield deployment
        finally:
            deployment.http.close()
    finally:
        service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- durable sleep across a crash --------------------------------------------------------------


def test_sleep_survives_the_service_being_killed(deployment: Deployment) -> None:
    key = unique("nap")
    started = time.monotonic()
    invocation_id = deployment.send("/CtxSleeper/long_nap", key)
    wait_until(lambda: deployment.journal_has(invocation_id, "sleep"), "the sleep in the journal")
    deployment.service.kill()  # a crash in the middle of the sleep
    time.sleep(0.3)
    deployment.service.start()
    assert deployment.result(invocation_id) == f"{key} slept 2s"
    assert time.monotonic() - started >= 1.9, "the sleep did not last its 2 s"
    assert deployment.ledger(f"{key}.nap") == ["before", "after"]


# -- saga ------------------------------------------------------------------------------------


def test_saga_compensates_when_a_later_step_fails(deployment: Deployment) -> None:
    key = unique("saga")
    response = deployment.post("/CtxSaga/book", {"key": key, "amount": 500})
    assert response.status_code == 402, response.text
    assert "card declined for 500" in response.text
    assert deployment.ledger(f"{key}.saga") == ["reserve hotel", "cancel hotel"]

    key = unique("saga")
    assert deployment.ok("/CtxSaga/book", {"key": key, "amount": 50}) == "booked, charged 50"
    assert deployment.ledger(f"{key}.saga") == ["reserve hotel", "confirm"]


# -- awakeables ------------------------------------------------------------------------------


def test_awakeable_resolved_through_the_ingress(deployment: Deployment) -> None:
    key = unique("awk")
    invocation_id = deployment.send("/CtxAwait/wait_for_approval", key)
    [awakeable_id] = deployment.wait_ledger(f"{key}.awakeable")
    response = deployment.http.post(
        f"/restate/awakeables/{awakeable_id}/resolve",
        content=json.dumps("yes"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text
    assert deployment.result(invocation_id) == "approved: yes"
    assert deployment.ledger(f"{key}.awakeable") == [awakeable_id], "published more than once"


def test_awakeable_rejected_through_the_ingress(deployment: Deployment) -> None:
    key = unique("awk")
    invocation_id = deployment.send("/CtxAwait/wait_for_approval", key)
    [awakeable_id] = deployment.wait_ledger(f"{key}.awakeable")
    response = deployment.http.post(
        f"/restate/awakeables/{awakeable_id}/reject",
        content="not today",
        headers={"content-type": "text/plain"},
    )
    assert response.status_code in (200, 202), response.text
    answer = deployment.result(invocation_id)
    assert answer.startswith("rejected: not today"), answer


def test_awakeables_resolved_and_rejected_by_another_handler(deployment: Deployment) -> None:
    resolved, rejected = unique("awk"), unique("awk")
    resolved_id = deployment.send("/CtxAwait/wait_for_approval", resolved)
    rejected_id = deployment.send("/CtxAwait/wait_for_approval", rejected)
    [awakeable] = deployment.wait_ledger(f"{resolved}.awakeable")
    deployment.ok("/CtxAwait/resolve_it", {"id": awakeable, "value": "from a handler"})
    [awakeable] = deployment.wait_ledger(f"{rejected}.awakeable")
    deployment.ok("/CtxAwait/reject_it", {"id": awakeable, "message": "nope"})
    assert deployment.result(resolved_id) == "approved: from a handler"
    assert deployment.result(rejected_id) == "rejected: nope (418)"


# -- workflows and durable promises ----------------------------------------------------------


def test_workflow_promise_resolved_by_a_shared_handler(deployment: Deployment) -> None:
    workflow_id = unique("wf")
    email = f"{workflow_id}@example.com"
    invocation_id = deployment.send(f"/CtxSignup/{workflow_id}/run", email)
    # The mail step runs after the first peek: from then on the workflow waits for the link.
    assert deployment.wait_ledger(f"{workflow_id}.mail") == [email]
    assert deployment.ok(f"/CtxSignup/{workflow_id}/status") == "waiting for the link"
    assert deployment.ok(f"/CtxSignup/{workflow_id}/peek") is None
    deployment.ok(f"/CtxSignup/{workflow_id}/click", "link-1")
    expected = {
        "email": email,
        "clicked": "link-1",
        "before": None,
        "after": "link-1",
        "same": "link-1",
    }
    assert deployment.result(invocation_id) == expected
    assert deployment.ok(f"/CtxSignup/{workflow_id}/status") == "verified"
    assert deployment.ok(f"/CtxSignup/{workflow_id}/peek") == "link-1"
    output = deployment.http.get(f"/restate/workflow/CtxSignup/{workflow_id}/output")
    assert output.status_code == 200, output.text
    assert output.json() == expected
    assert deployment.ledger(f"{workflow_id}.mail") == [email]


def test_workflow_promise_rejected(deployment: Deployment) -> None:
    workflow_id = unique("wf")
    invocation_id = deployment.send(f"/CtxSignup/{workflow_id}/run", "x@example.com")
    deployment.wait_ledger(f"{workflow_id}.mail")
    deployment.ok(f"/CtxSignup/{workflow_id}/deny", "expired")
    response = deployment.attach(invocation_id)
    assert response.status_code == 410, response.text
    assert "link rejected: expired" in response.text
    assert deployment.ok(f"/CtxSignup/{workflow_id}/status") == "rejected: expired"


def test_workflow_driven_from_another_service(deployment: Deployment) -> None:
    workflow_id = unique("wf")
    result = deployment.ok("/CtxCalls/drive_signup", workflow_id)
    assert result["email"] == f"{workflow_id}@example.com"
    assert result["clicked"] == result["after"] == result["same"] == "from-a-service"
    assert deployment.ok(f"/CtxSignup/{workflow_id}/status") == "verified"


# -- select ----------------------------------------------------------------------------------


def test_select_awakeable_wins_over_the_timeout(deployment: Deployment) -> None:
    key = unique("race")
    started = time.monotonic()
    invocation_id = deployment.send("/CtxAwait/race", {"key": key, "timeout_ms": 20_000})
    [awakeable_id] = deployment.wait_ledger(f"{key}.awakeable")
    response = deployment.http.post(
        f"/restate/awakeables/{awakeable_id}/resolve",
        content=json.dumps("fast"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text
    assert deployment.result(invocation_id) == ["approved", "fast"]
    assert time.monotonic() - started < 15, "select waited for the timeout"


def test_select_timeout_wins_when_nothing_resolves(deployment: Deployment) -> None:
    key = unique("race")
    started = time.monotonic()
    assert deployment.ok("/CtxAwait/race", {"key": key, "timeout_ms": 300}) == ["timeout", None]
    assert time.monotonic() - started >= 0.28
    assert len(deployment.ledger(f"{key}.awakeable")) == 1


def test_select_raises_when_the_winner_failed(deployment: Deployment) -> None:
    key = unique("race")
    invocation_id = deployment.send("/CtxAwait/race", {"key": key, "timeout_ms": 20_000})
    [awakeable_id] = deployment.wait_ledger(f"{key}.awakeable")
    response = deployment.http.post(
        f"/restate/awakeables/{awakeable_id}/reject",
        content="declined",
        headers={"content-type": "text/plain"},
    )
    assert response.status_code in (200, 202), response.text
    who, message = deployment.result(invocation_id)
    assert who == "failed" and "declined" in message


# -- calls -----------------------------------------------------------------------------------


def test_fan_out_of_20_calls_gathered(deployment: Deployment) -> None:
    invocation_id = deployment.send("/CtxCalls/fan_out", 20)
    assert deployment.result(invocation_id) == [i * i for i in range(20)]
    rows = deployment.server.query(
        f"SELECT target_handler_name FROM sys_invocation WHERE invoked_by_id = '{invocation_id}'"
    )
    assert [r["target_handler_name"] for r in rows] == ["square"] * 20


def test_call_with_an_idempotency_key_runs_once(deployment: Deployment) -> None:
    key = unique("idem")
    assert deployment.ok("/CtxCalls/call_twice", key) == [1, 1]
    assert deployment.ledger(f"{key}.counted") == ["ran"]


def test_headers_reach_the_callee(deployment: Deployment) -> None:
    assert deployment.ok("/CtxCalls/with_headers", "t1") == {
        "x-ctx-trace": "trace-t1",
        "tag": "t1",
    }


def test_send_delay(deployment: Deployment) -> None:
    key = unique("delay")
    answer = deployment.ok("/CtxCalls/delayed", key)
    assert answer["id"].startswith("inv_")
    [stamp] = deployment.wait_ledger(f"{key}.stamp")
    assert float(stamp) - answer["sent_at"] >= 0.75, "the delayed send arrived too early"
    assert deployment.invocation(answer["id"])["target_handler_name"] == "stamp"


def test_invocation_ids_of_a_call_and_a_send(deployment: Deployment) -> None:
    answer = deployment.ok("/CtxCalls/ids", 3)
    assert answer["result"] == 9
    call_id, send_id = answer["call_id"], answer["send_id"]
    assert call_id.startswith("inv_") and send_id.startswith("inv_") and call_id != send_id
    assert deployment.invocation(call_id)["target_handler_name"] == "square"
    wait_until(
        lambda: deployment.invocation(send_id)["status"] == "completed", "the send to complete"
    )


def test_attach_to_a_sent_invocation(deployment: Deployment) -> None:
    assert deployment.ok("/CtxCalls/send_and_attach", 200) == 200


def test_generic_call_and_send_by_name_then_an_object_call(deployment: Deployment) -> None:
    key = unique("generic")
    assert deployment.ok("/CtxCalls/by_name", {"n": 7, "key": key}) == 49
    assert wait_until(lambda: deployment.ok(f"/CtxList/{key}/items"), "the generic send") == [7]
    assert deployment.ok("/CtxCalls/append_via_call", {"key": key, "n": 8}) == 2
    assert deployment.ok(f"/CtxList/{key}/items") == [7, 8]


def test_call_order_to_one_object_key_is_preserved(deployment: Deployment) -> None:
    key = unique("order")
    assert deployment.ok("/CtxCalls/produce", {"key": key, "count": 50}) == 50
    items = wait_until(
        lambda: (found := deployment.ok(f"/CtxList/{key}/items")) and len(found) >= 50 and found,
        "50 items in the object",
    )
    assert items == list(range(50))


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_through_the_admin_api_runs_compensation(deployment: Deployment) -> None:
    key = unique("cancel")
    invocation_id = deployment.send("/CtxAwait/wait_until_cancelled", key)
    deployment.wait_ledger(f"{key}.awakeable")
    wait_until(lambda: deployment.journal_has(invocation_id, "run"), "the publish step")
    deployment.cancel(invocation_id)
    response = deployment.attach(invocation_id)
    assert response.status_code == 409, response.text
    assert deployment.ledger(f"{key}.cancel") == ["compensated 409"]
    row = deployment.invocation(invocation_id)
    assert row["status"] == "completed" and row["completion_result"] == "failure", row
    assert "cancel" in str(row["completion_failure"]).lower(), row


def test_cancelling_a_parent_cancels_the_child_it_awaits(deployment: Deployment) -> None:
    key = unique("tree")
    parent_id = deployment.send("/CtxCancel/parent", key)
    [child_id] = deployment.wait_ledger(f"{key}.child")
    wait_until(lambda: deployment.journal_has(child_id, "sleep"), "the child's sleep")
    deployment.cancel(parent_id)
    assert deployment.attach(parent_id).status_code == 409
    assert deployment.attach(child_id).status_code == 409
    ledger = deployment.wait_ledger(f"{key}.ledger", lines=2)
    assert sorted(ledger) == ["child compensated 409", "parent compensated 409"]


def test_cancel_invocation_of_a_sent_invocation(deployment: Deployment) -> None:
    key = unique("cancel-sent")
    answer = deployment.ok("/CtxCancel/cancel_sent", key)
    assert answer["id"].startswith("inv_") and answer["code"] == 409, answer
    assert deployment.attach(answer["id"]).status_code == 409
    assert "child done" not in deployment.ledger(f"{key}.ledger")


def test_cancel_a_call_through_its_future(deployment: Deployment) -> None:
    key = unique("cancel-call")
    answer = deployment.ok("/CtxCancel/cancel_call", key)
    assert answer["id"].startswith("inv_") and answer["code"] == 409, answer
    assert deployment.invocation(answer["id"])["completion_result"] == "failure"


# -- signals ---------------------------------------------------------------------------------


def test_named_signals_resolved_and_rejected_by_other_handlers(deployment: Deployment) -> None:
    key = unique("signal")
    invocation_id = deployment.send("/CtxSignals/wait_for_signals", key)
    assert deployment.wait_ledger(f"{key}.invocation") == [invocation_id]
    deployment.ok("/CtxSignals/send_go", {"id": invocation_id, "value": "hello"})
    deployment.ok("/CtxSignals/reject_second", {"id": invocation_id, "message": "nope"})
    assert deployment.result(invocation_id) == {"go": "hello", "second": "rejected: nope (418)"}


# -- combinators -----------------------------------------------------------------------------


def test_wait_completed_and_as_completed_follow_completion_order(
    deployment: Deployment,
) -> None:
    assert deployment.ok("/CtxCombinators/completion_order") == {
        "wait_completed": {"done": 1, "pending": 1, "fast_done": True},
        "as_completed": [100, 400, 700],
    }


def test_gathered_run_steps_are_stable_across_a_retry(deployment: Deployment) -> None:
    key = unique("steps")
    values = deployment.ok("/CtxCombinators/parallel_steps", key)
    assert [v.split(":")[0] for v in values] == ["0", "1", "2", "3", "4"]
    attempts = [json.loads(line) for line in deployment.ledger(f"{key}.attempts")]
    assert attempts == [values, values], "the steps' values changed across the retry"
    assert sorted(deployment.ledger(f"{key}.draws")) == ["0", "1", "2", "3", "4"], (
        "a step's closure ran more than once"
    )


# -- logging ---------------------------------------------------------------------------------


def test_logger_drops_records_while_replaying(deployment: Deployment) -> None:
    key = unique("log")
    assert deployment.ok("/CtxLogs/chatty", key) == "logged"
    expected = [
        f"{key} line 1, before the first sleep",
        f"{key} line 2, between the sleeps",
        f"{key} line 3, after the sleeps",
    ]
    lines = wait_until(
        lambda: (
            (
                (found := [ln for ln in deployment.service.log_text().splitlines() if key in ln])
                and expected[2] in found[-1]
                and found
            )
            or None
        ),
        "the handler's log lines",
        timeout=5,
    )
    for line in expected:
        assert sum(line in found for found in lines) == 1, (line, lines)
    # The premise: a plain logging.Logger logs again on every replay of the handler.
    plain = sum(f"{key} plain, every attempt" in found for found in lines)
    if deployment.config == "replaying":
        assert plain >= 2, lines
    else:
        assert plain == 1, lines
