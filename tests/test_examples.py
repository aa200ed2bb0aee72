"""The example services in services/ behave as their docstrings say, behind a real server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from framework._devserver import RestateServer, ServiceProcess


@pytest.fixture(scope="module")
def examples(restate_server: RestateServer, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[httpx.Client, ServiceProcess]]:
    from tests.conftest import ROOT

    log = tmp_path_factory.mktemp("examples") / "service.log"
    with ServiceProcess("services.app:app", log_path=log, cwd=ROOT) as service:
        restate_server.register(service.url, force=True)
        with httpx.Client(base_url=restate_server.ingress_url, timeout=30) as client:
            yield client, service


def test_greeter_and_counter(examples: tuple[httpx.Client, ServiceProcess]) -> None:
    client, _ = examples
    answer = client.post("/Greeter/greet", json="Ann")
    assert answer.status_code == 200 and answer.json().startswith("Hello, Ann!")
    key = f"c{time.time_ns()}"
    assert client.post(f"/Counter/{key}/add", json=2).json() == 2
    assert client.post(f"/Counter/{key}/add", json=3).json() == 5


def test_trip_saga_books_or_undoes(examples: tuple[httpx.Client, ServiceProcess]) -> None:
    client, service = examples
    booked = client.post("/Trips/book", json={"traveller": "Ann", "card": "4242"})
    assert booked.status_code == 200
    assert booked.json()["flight"] == "flight-for-Ann"
    assert booked.json()["payment"].startswith("payment-")
    declined = client.post("/Trips/book", json={"traveller": "Bob", "card": "0000"})
    assert declined.status_code == 402 and "declined" in declined.text
    log = _wait_for(service, "released flight-for-Bob")
    assert log.index("released hotel-for-Bob") < log.index("released flight-for-Bob")


def test_signup_workflow_waits_for_the_click(
        examples: tuple[httpx.Client, ServiceProcess]) -> None:
    client, service = examples
    user = f"u{time.time_ns()}"
    started = client.post(f"/Signup/{user}/run/send", json={"email": f"{user}@example.com"})
    assert started.status_code == 202, started.text
    log = _wait_for(service, f"mail to {user}@example.com")
    secret = re.search(rf"mail to {user}@example.com: .* secret (\S+)", log)
    assert secret is not None
    assert client.post(f"/Signup/{user}/status").json() == "waiting for e-mail confirmation"
    assert client.post(f"/Signup/{user}/click", json=secret.group(1)).status_code == 200
    output = client.get(f"/restate/workflow/Signup/{user}/attach")
    assert output.status_code == 200 and output.json() == f"{user} is signed up"
    assert client.post(f"/Signup/{user}/status").json() == "confirmed"


def _wait_for(service: ServiceProcess, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = service.log_text()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the service log:\n{service.log_tail()}")


