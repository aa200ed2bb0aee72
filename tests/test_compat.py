"""Compatibility check: service modules written for the official Restate Python SDK run on ours.

``tests/compat/`` holds copies of official examples, each verbatim except its import lines
(``import restate`` -> ``import framework as restate`` and so on): the SDK's own examples
(restatedev/sdk-python ``examples/``), snippets of the docs (restatedev/docs-restate) and the
docs' Tour of Microservice Orchestration (restatedev/examples). Every module's header names its
source. ``tests/compat/app.py`` serves them all in one endpoint; the tests below call each
service through a real restate-server's ingress and check what the example documents.

The tour's pydantic models are ported to msgspec Structs (``tests/compat/tour_types.py``), as
there is no pydantic serde here; that port is the one file that is not a verbatim copy.
Requests use the snake_case field names, which pydantic accepts too.

Every service test runs against the default server and against the one that suspends at every await
and sends no eager state (every resume is a full replay, every state read is lazy).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from framework._devserver import RestateServer, ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "tests" / "compat"
MODULES = sorted(p.stem for p in COMPAT.glob("*.py") if p.stem != "__init__")

CALL_TIMEOUT = 20.0  # seconds: bounds every ingress call (a failing handler is retried forever)
WORKFLOW_TIMEOUT = 10.0  # the TIMEOUT of tests/compat/workflow.py


# -- static checks: the modules are the official text with only the imports changed ---------


def _body_lines(text: str) -> list[tuple[int, str]]:
    """The module's lines after its leading comment block (the header naming the source)."""
    lines = text.splitlines()
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return list(enumerate(lines, 1))[start:]


_FRAMEWORK_IMPORT = re.compile(
    r"^\s*(import framework(\.\w+)*( as \w+)?|from framework(\.\w+)* import .+)$"
)
_RESTATE_IMPORT = re.compile(r"^\s*(import restate\b|from restate(\.\w+)* import\b)")


def test_compat_modules_exist() -> None:
    assert "app" in MODULES
    assert len(MODULES) >= 6, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_differs_from_the_official_text_only_in_imports(name: str) -> None:
    text = (COMPAT / f"{name}.py").read_text()
    assert text.startswith("# "), f"{name}.py must open with a comment naming its source"
    header = text.split("\n\n", 1)[0]
    assert "restatedev/" in header, f"{name}.py's header does not name its source"
    for number, line in _body_lines(text):
        assert not _RESTATE_IMPORT.match(line), f"{name}.py:{number} still imports restate"
        if "framework" in line:
            assert _FRAMEWORK_IMPORT.match(line), (
                f"{name}.py:{number} names framework outside an import line: {line!r}"
            )
    # The same, on the syntax tree: no import of restate is left, and our package is only
    # imported as restate (or by name from it / its exceptions and serde modules).
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] != "restate", f"{name}.py imports restate"
                if alias.name.split(".")[0] == "framework":
                    assert alias.name == "framework" and alias.asname == "restate", (
                        f"{name}.py: `import {alias.name}` is not `import framework as restate`"
                    )
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] != "restate", f"{name}.py imports from restate"
            if node.module.split(".")[0] == "framework":
                assert node.module in ("framework", "framework.exceptions", "framework.serde")


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    """Each module imports on its own: a name the official SDK exports and we do not shows
    up here, pinned to the module that uses it."""
    importlib.import_module(f"tests.compat.{name}")


# -- the compat app, served and registered ----------------------------------------------------


class Compat:
    """The compat services behind one server, and ways to call them and read their prints."""

    def __init__(self, server: RestateServer, service: ServiceProcess) -> None:
        self.server = server
        self.service = service
        self.http = httpx.Client(base_url=server.ingress_url, timeout=CALL_TIMEOUT)
        self.workflow_timeout_key = ""
        self.workflow_timeout_started = 0.0

    def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        if body is None:  # a handler without input takes no body
            return self.http.post(path, headers=headers)
        return self.http.post(path, content=json.dumps(body),
                              headers={"content-type": "application/json", **headers})

    def ok(self, path: str, body: Any = None) -> Any:
        response = self.post(path, body)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return json_or_none(response)

    def log_mark(self) -> int:
        return len(self.service.log_text())

    def log_since(self, mark: int) -> str:
        return self.service.log_text()[mark:]

    def wait_log(self, pattern: str, mark: int, timeout: float = CALL_TIMEOUT) -> re.Match[str]:
        """Wait until the service has printed a line matching ``pattern`` after ``mark``."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_since(mark))
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the service printed nothing matching {pattern!r} within {timeout:.0f}s; "
                    f"its output since then:\n{self.log_since(mark)[-3000:]}"
                )
            time.sleep(0.05)

    def object_state(self, service: str, key: str) -> dict[str, Any]:
        rows = self.server.query(
            f"SELECT key, value_utf8 FROM state WHERE service_name = '{service}' "
            f"AND service_key = '{key}'"
        )
        return {row["key"]: json.loads(row["value_utf8"]) for row in rows}


def json_or_none(response: httpx.Response) -> Any:
    """The JSON body; None for an empty one. (For a handler returning None the official SDK
    answers with an empty body, we answer ``null``: both mean None here.)"""
    return response.json() if response.content else None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=["restate_server", "restate_server_replaying"],
                ids=["default", "replaying"])
def compat(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compat]:
    server: RestateServer = request.getfixturevalue(request.param)
    log_dir = tmp_path_factory.mktemp(f"compat-{request.param}")
    service = ServiceProcess("tests.compat.app:app", log_path=log_dir / "service.log",
                             cwd=ROOT)
    service.start()
    try:
        server.register(service.url)
        compat = Compat(server, service)
        # The workflow's timeout branch waits 10 s: start it now, so that its timer runs
        # while the other tests do (test_workflow_* come last and collect it).
        compat.workflow_timeout_key = unique("timeout")
        compat.workflow_timeout_started = time.monotonic()
        response = compat.post(f"/payment/{compat.workflow_timeout_key}/pay/send", 300)
        assert response.status_code in (200, 202), response.text
        yield compat
        compat.http.close()
    finally:
        service.stop()


# -- sdk-python examples/greeter.py ----------------------------------------------------------


def test_greeter(compat: Compat) -> None:
    assert compat.ok("/greeter/greet", "Ann") == "Hello Ann!"


# -- sdk-python examples/random_greeter.py: ctx.random(), ctx.uuid(), ctx.time() -------------


def test_random_greeter(compat: Compat) -> None:
    text = compat.ok("/random_greeter/greet", "Ann")
    found = re.fullmatch(
        r"Hello Ann with random number (\d+), random bytes (b.+) random uuid (\S+),"
        r"now datetime (.+)!",
        text,
    )
    assert found, text
    number, raw, uid, now = found.groups()
    assert 0 <= int(number) <= 100
    value = ast.literal_eval(raw)
    assert isinstance(value, bytes) and len(value) == 10
    assert uuid.UUID(uid).version == 4
    # ctx.time() is seconds since the epoch: datetime.fromtimestamp gives local time now.
    assert abs((datetime.fromisoformat(now) - datetime.now()).total_seconds()) < 120


# -- sdk-python examples/virtual_object.py: state per key, a shared handler --------------------


def test_counter_object_keeps_state_per_key(compat: Compat) -> None:
    key = unique("c")
    assert compat.ok(f"/counter/{key}/increment", 5) == 5
    assert compat.ok(f"/counter/{key}/increment", 3) == 8
    assert compat.ok(f"/counter/{key}/count") == 8
    assert compat.ok(f"/counter/other-{key}/count") == 0
    assert compat.object_state("counter", key) == {"counter": 8}


# -- docs develop/state.py: get with type_hint, set, clear, clear_all, state_keys ------------


def test_state_snippet_clears_all_state(compat: Compat) -> None:
    key = unique("s")
    # Give the object some state first (admin API), so that clear_all has work to do.
    seeded = {"my-string-key": "hello", "my-number-key": 7, "other": [1, 2]}
    response = httpx.post(f"{compat.server.admin_url}/services/Caller/state", json={
        "object_key": key,
        "new_state": {k: list(json.dumps(v).encode()) for k, v in seeded.items()},
    }, timeout=CALL_TIMEOUT)
    assert response.status_code in (200, 202), response.text
    deadline = time.monotonic() + 10
    while compat.object_state("Caller", key) != seeded:
        assert time.monotonic() < deadline, compat.object_state("Caller", key)
        time.sleep(0.1)
    assert compat.ok(f"/Caller/{key}/caller", "x") is None
    assert compat.object_state("Caller", key) == {}


# -- docs tour: RunOptions(max_attempts=..., max_retry_duration=...) --------------------------


def test_run_typed_with_run_options(compat: Compat) -> None:
    request = {"userId": "u1", "creditCard": "4242", "subscriptions": ["Hulu"]}
    assert compat.ok("/MyService/myHandler", request) is None


# -- docs tour: awakeables (Payments/process waits for a webhook) ------------------------------


def _process_payment(compat: Compat, customer: str) -> tuple[Any, str]:
    """Start Payments/process in a thread; return its future and the awakeable id that
    init_payment prints (the tour has the payment provider call back with it)."""
    mark = compat.log_mark()
    request = {"amount": 100, "currency": "EUR", "customer_id": customer,
               "order_id": unique("order")}
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(httpx.post, f"{compat.server.ingress_url}/Payments/process",
                         content=json.dumps(request),
                         headers={"content-type": "application/json"},
                         timeout=CALL_TIMEOUT)
    pool.shutdown(wait=False)
    found = compat.wait_log(r"Payments/confirm --json '(\{.*\})'", mark)
    return future, json.loads(found.group(1))["id"]


def test_awakeable_resolved_by_a_handler(compat: Compat) -> None:
    future, awakeable_id = _process_payment(compat, unique("cust"))
    confirmation = {"id": awakeable_id, "result": {"success": True, "transaction_id": "txn-1"}}
    assert compat.ok("/Payments/confirm", confirmation) is None
    response = future.result(timeout=CALL_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "transaction_id": "txn-1", "error_message": None}


def test_awakeable_resolved_and_rejected_through_the_ingress(compat: Compat) -> None:
    future, awakeable_id = _process_payment(compat, unique("cust"))
    resolved = compat.post(f"/restate/awakeables/{awakeable_id}/resolve",
                           {"success": True, "transaction_id": "txn-2"})
    assert resolved.status_code in (200, 202), resolved.text
    response = future.result(timeout=CALL_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "transaction_id": "txn-2", "error_message": None}

    future, awakeable_id = _process_payment(compat, unique("cust"))
    rejected = compat.http.post(f"/restate/awakeables/{awakeable_id}/reject",
                                content=b"card declined",
                                headers={"content-type": "text/plain"})
    assert rejected.status_code in (200, 202), rejected.text
    response = future.result(timeout=CALL_TIMEOUT)
    assert response.status_code == 500, response.text
    assert "card declined" in response.text


# -- docs tour: sagas (compensations run in reverse order on a terminal error) ----------------


def test_saga_compensates_in_reverse_order(compat: Compat) -> None:
    user = unique("user")
    mark = compat.log_mark()
    response = compat.post("/SubscriptionSaga/add", {
        "user_id": user, "credit_card": "4242", "subscriptions": ["Hulu", "Disney"]})
    assert response.status_code == 500, response.text
    assert "Disney subscription is not available in this region" in response.text
    log = compat.log_since(mark)
    created = log.find(f">>> Created subscription Hulu for user {user}")
    undo_disney = log.find(f"Removing subscription for user: {user}, subscription: Disney")
    undo_hulu = log.find(f"Removing subscription for user: {user}, subscription: Hulu")
    undo_pay = log.find("Removing recurring payment: ", max(undo_hulu, 0))
    assert -1 < created < undo_disney < undo_hulu < undo_pay, log[-3000:]
    assert f"Created subscription Disney for user {user}" not in log
    for line in ("subscription: Disney", "subscription: Hulu"):
        assert log.count(f"Removing subscription for user: {user}, {line}") == 1, log[-3000:]


def test_saga_without_failure_runs_no_compensation(compat: Compat) -> None:
    user = unique("user")
    mark = compat.log_mark()
    assert compat.ok("/SubscriptionSaga/add", {
        "user_id": user, "credit_card": "4242", "subscriptions": ["Hulu", "Max"]}) is None
    log = compat.log_since(mark)
    assert f">>> Created subscription Max for user {user}" in log
    assert f"Removing subscription for user: {user}" not in log


# -- docs tour: service communication (call, send, delayed send) -------------------------------


def test_call_send_and_delayed_send(compat: Compat) -> None:
    ticket = unique("ticket")
    email = f"{ticket}@example.com"
    delay = 4.0
    concert = (datetime.now() + timedelta(days=1, seconds=delay)).isoformat()
    mark = compat.log_mark()
    started = time.monotonic()
    text = compat.ok("/ConcertTicketingService/buy", {
        "ticket_id": ticket, "concert_date": concert, "price": 42.5, "customer_email": email})
    found = re.fullmatch(r"Ticket purchased successfully with payment reference: (\S+)", text)
    assert found, text
    pay_ref = found.group(1)
    assert uuid.UUID(pay_ref).version == 4
    # The call's answer is the callee's ctx.uuid(), which the callee printed.
    compat.wait_log(re.escape(f"Processing payment for ticket {ticket} with payment ID {pay_ref}"),
                    mark)
    # The one-way send runs soon; the delayed one a day before the concert (~4 s from now).
    compat.wait_log(re.escape(f"Sending ticket to {email} for concert on {concert}"), mark)
    reminder = re.escape(f"Sending reminder for concert on {concert} to {email}")
    assert not re.search(reminder, compat.log_since(mark)), "the delayed send ran at once"
    compat.wait_log(reminder, mark, timeout=delay + CALL_TIMEOUT)
    assert time.monotonic() - started >= delay - 1.0, "the delayed send ran too early"


# -- docs tour: concurrent tasks (restate.gather over ctx.run_typed futures) -------------------


def test_gather_of_concurrent_steps(compat: Compat) -> None:
    user = unique("user")
    mark = compat.log_mark()
    result = compat.ok("/ParallelSubscriptionService/add", {
        "user_id": user, "credit_card": "4242", "subscriptions": ["Hulu", "Max", "Prime"]})
    assert result["success"] is True
    assert re.fullmatch(r"payRef-[0-9a-f-]{36}", result["payment_ref"]), result
    log = compat.log_since(mark)
    for name in ("Hulu", "Max", "Prime"):
        assert log.count(f">>> Created subscription {name} for user {user}") == 1, log[-3000:]


# -- sdk-python examples/workflow.py: durable promise + select against a sleep ----------------


def _attach(compat: Compat, key: str) -> httpx.Response:
    return compat.http.get(f"/restate/workflow/payment/{key}/attach")


def test_workflow_promise_resolved_by_shared_handler(compat: Compat) -> None:
    approved, declined = unique("approved"), unique("declined")
    for key in (approved, declined):
        response = compat.post(f"/payment/{key}/pay/send", 100)
        assert response.status_code in (200, 202), response.text
    assert compat.ok(f"/payment/{approved}/payment_verified", "approved") is None
    assert compat.ok(f"/payment/{declined}/payment_verified", "declined") is None

    response = _attach(compat, approved)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert compat.object_state("payment", approved) == {"status": "payment approved"}

    response = _attach(compat, declined)
    assert response.status_code == 401, response.text
    assert "Payment declined" in response.text
    assert compat.object_state("payment", declined) == {"status": "payment declined"}


def test_workflow_select_times_out(compat: Compat) -> None:
    """The run started by the fixture was never verified: its 10 s sleep wins the select."""
    key = compat.workflow_timeout_key
    response = _attach(compat, key)
    assert response.status_code == 410, response.text
    assert "Payment verification timed out" in response.text
    assert time.monotonic() - compat.workflow_timeout_started >= WORKFLOW_TIMEOUT - 0.5
    assert compat.object_state("payment", key) == {"status": "payment verification timed out"}
