"""The ASGI lifespan (startup/shutdown hooks) and mounting the app inside a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from framework import Context, RestateApp, Service, app
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.exceptions import RestateServerError

ROOT = Path(__file__).resolve().parents[1]
MANIFEST_ACCEPT = "application/vnd.restate.endpointmanifest.v2+json"


def _services() -> list[Service]:
    service = Service("LifespanUnit")

    @service.handler()
    async def greet(ctx: Context) -> str:
        return "hi"

    return [service]


async def _drive(asgi: RestateApp, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the lifespan protocol as an ASGI server does; the messages the app sent."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await inbox.put({"type": "lifespan.shutdown"})

    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    # A failing hook is re-raised after the failure was reported.
    with contextlib.suppress(RuntimeError):
        await asyncio.wait_for(asgi(scope, inbox.get, send), 5)
    return sent


def test_hooks_run_around_the_app_life() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(restate_app: RestateApp) -> AsyncIterator[dict[str, Any]]:
        events.append(f"startup {sorted(restate_app.services)}")
        yield {"pool": "ready"}
        events.append("shutdown")

    state: dict[str, Any] = {}
    sent = asyncio.run(_drive(app(_services(), lifespan=lifespan), state))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["startup ['LifespanUnit']", "shutdown"]
    assert state == {"pool": "ready"}


def test_without_hooks_the_lifespan_completes() -> None:
    sent = asyncio.run(_drive(app(_services()), {}))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("phase", ["startup", "shutdown"])
def test_a_failing_hook_is_reported(phase: str) -> None:
    @asynccontextmanager
    async def lifespan(restate_app: RestateApp) -> AsyncIterator[None]:
        if phase == "startup":
            raise RuntimeError("no database")
        yield
        raise RuntimeError("no database")

    sent = asyncio.run(_drive(app(_services(), lifespan=lifespan), {}))
    assert sent[-1]["type"] == f"lifespan.{phase}.failed"
    assert "RuntimeError: no database" in sent[-1]["message"]


def test_lifespan_must_be_callable() -> None:
    with pytest.raises(ValueError, match="lifespan must be a callable"):
        app(_services(), lifespan="not a factory")  # type: ignore[arg-type]


# -- in a served process --------------------------------------------------------------------


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_server_runs_the_hooks_on_start_and_on_sigterm(tmp_path: Path) -> None:
    ledger = tmp_path / "lifespan.log"
    service = ServiceProcess(
        "tests.endpoint_apps:lifespan_app",
        env={"FRAMEWORK_TEST_DIR": str(tmp_path)},
        log_path=tmp_path / "service.log",
        cwd=ROOT,
    )
    service.start(timeout=30)
    try:
        # Startup runs before the server listens.
        assert ledger.read_text().splitlines() == ["startup ['LifespanGreeter']"]
        with httpx.Client(base_url=service.url, http1=False, http2=True, timeout=10) as client:
            assert client.get("/health").status_code == 200
    finally:
        service.stop(timeout=15)  # SIGTERM: the server shuts down gracefully
    assert ledger.read_text().splitlines() == ["startup ['LifespanGreeter']", "shutdown"]
    log = service.log_text()
    assert "Lifespan" not in log and "Traceback" not in log, log


def test_a_failing_startup_hook_stops_the_server(tmp_path: Path) -> None:
    service = ServiceProcess(
        "tests.endpoint_apps:failing_lifespan_app",
        log_path=tmp_path / "service.log",
        cwd=ROOT,
    )
    with pytest.raises(RestateServerError, match="the database is not there"):
        service.start(timeout=30)
    service.stop()


# -- mounted under a prefix inside a Starlette app ------------------------------------------


def test_mounted_app_serves_below_its_prefix(tmp_path: Path, restate_server: RestateServer) -> None:
    service = ServiceProcess(
        "tests.endpoint_apps:mounted_app", log_path=tmp_path / "service.log", cwd=ROOT
    )
    service.start(timeout=30)
    try:
        with httpx.Client(base_url=service.url, http1=False, http2=True, timeout=10) as client:
            assert client.get("/").text == "the rest of the site"
            assert client.get("/restate/health").status_code == 200
            response = client.get("/restate/discover", headers={"accept": MANIFEST_ACCEPT})
            assert response.status_code == 200, response.text
            assert [s["name"] for s in response.json()["services"]] == ["MountedGreeter"]
            assert client.get("/discover", headers={"accept": MANIFEST_ACCEPT}).status_code == 404

        restate_server.register(service.url + "/restate")
        with httpx.Client(base_url=restate_server.ingress_url, timeout=30) as ingress:
            for who in ("Ann", "Bo"):
                response = ingress.post("/MountedGreeter/greet", json=who)
                assert response.status_code == 200, response.text
                assert response.json() == f"hello {who} from MountedGreeter"
    finally:
        service.stop()
