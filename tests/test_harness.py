"""The test harness (framework.testing), used the way a user's test suite would use it.

Each ``create_test_harness`` starts its own restate-server (about half a second) and serves
tests/client_services.py: in this process for the app object, in a child process for the
``"module:attribute"`` string. The pytest fixture shares one server for the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from framework import HttpError, create_test_harness, test_harness
from framework._dev.install import RESTATE_SERVER_VERSION, ensure_restate_server
from framework._dev.processes import live_processes, port_is_free
from framework.entry_codec import JournalValueCodec
from framework.exceptions import RestateServerError
from framework.harness import (
    AsgiServer,
    BindAddress,
    RestateContainer,
    TcpSocketBindAddress,
    TestConfiguration,
    create_app_server,
    create_restate_container,
    find_free_port,
    run_in_background,
)
from framework.testing import HarnessEnvironment, server_version_for_image
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


# -- restate_image: which restate-server runs ---------------------------------------------------


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("restatedev/restate:1.6.2", "1.6.2"),
        ("docker.io/restatedev/restate:1.7.12", "1.7.12"),
        ("ghcr.io/restatedev/restate:1.5.0", "1.5.0"),
        ("restatedev/restate:latest", RESTATE_SERVER_VERSION),
        ("docker.io/restatedev/restate:latest", RESTATE_SERVER_VERSION),
        ("restatedev/restate", RESTATE_SERVER_VERSION),
    ],
)
def test_an_image_tag_names_the_release(image: str, version: str) -> None:
    assert server_version_for_image(image) == version
    assert TestConfiguration(restate_image=image).server_version() == version
    assert RestateContainer(image, False, False).version == version


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("restatedev/restate@sha256:" + "0" * 64, "pins an image digest"),
        ("restatedev/restate:main", "not a release version"),
        ("restatedev/restate:1.7", "not a release version"),
        ("quay.io/someone/restate:1.7.12", "not a restatedev/restate image"),
        ("my-registry:5000/restatedev/restate:1.7.12", "not a restatedev/restate image"),
    ],
)
async def test_an_image_that_names_no_release_is_refused(image: str, problem: str) -> None:
    before = _own_children()
    with pytest.raises(ValueError, match=problem) as refused:
        async with create_test_harness(svc.app, restate_image=image):
            pass
    message = str(refused.value)
    assert repr(image) in message
    assert "restatedev/restate:X.Y.Z" in message and "restate_server_version=" in message
    with pytest.raises(ValueError, match=problem):
        test_harness(svc.app, restate_image=image)
    with pytest.raises(ValueError, match=problem), create_restate_container(image):
        pass
    assert _own_children() == before, "nothing may start for an image that is refused"


def test_an_image_and_a_version_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="pass only one of them"):
        TestConfiguration(restate_image="restatedev/restate:1.6.2", restate_server_version="1.7.12")
    # An explicit version says more than "latest".
    config = TestConfiguration(
        restate_image="restatedev/restate:latest", restate_server_version="1.6.2"
    )
    assert config.server_version() == "1.6.2"


async def test_the_image_tag_is_the_release_that_runs() -> None:
    image = f"docker.io/restatedev/restate:{RESTATE_SERVER_VERSION}"
    async with create_test_harness(svc.app, restate_image=image) as env:
        assert env.server is not None
        assert env.server.version()["version"] == RESTATE_SERVER_VERSION
        assert await env.client.service_call(svc.greet, "Img") == "Hello, Img!"


async def test_restate_server_bin_running_another_release_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESTATE_SERVER_BIN", str(ensure_restate_server(RESTATE_SERVER_VERSION)))
    with pytest.warns(UserWarning, match=f"RESTATE_SERVER_BIN runs {RESTATE_SERVER_VERSION}"):
        async with create_test_harness(svc.app, restate_image="restatedev/restate:1.6.2") as env:
            assert await env.client.service_call(svc.greet, "Bin") == "Hello, Bin!"


async def test_journal_value_codec_reaches_the_ingress_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import framework.client

    real = framework.client.create_client
    received: list[Any] = []

    @contextlib.asynccontextmanager
    async def recording(
        ingress: str, headers: Any = None, journal_value_codec: Any = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        received.append(journal_value_codec)
        async with real(ingress, headers, **kwargs) as client:
            yield client

    monkeypatch.setattr(framework.client, "create_client", recording)
    codec = cast(JournalValueCodec, object())  # only passed on, never used
    async with create_test_harness(svc.app, journal_value_codec=codec) as env:
        assert await env.client.service_call(svc.greet, "Codec") == "Hello, Codec!"
    assert received == [codec]


# -- framework.harness: the official restate.harness names ----------------------------------------

OFFICIAL_HARNESS_PARAMETERS = {
    "create_test_harness": [
        "app",
        "follow_logs",
        "restate_image",
        "always_replay",
        "disable_retries",
        "journal_value_codec",
    ],
    "test_harness": ["app", "follow_logs", "restate_image", "always_replay", "disable_retries"],
    "RestateTestHarness": ["asgi_app", "config"],
    "TestConfiguration": ["restate_image", "stream_logs", "always_replay", "disable_retries"],
    "HarnessEnvironment": ["ingress_url", "admin_api_url", "client"],
    "RestateContainer": ["image", "always_replay", "disable_retries"],
    "create_restate_container": [
        "restate_image",
        "always_replay",
        "disable_retries",
        "stream_logs",
    ],
    "AsgiServer": ["asgi_app", "bind_address"],
    "BindAddress": [],
    "TcpSocketBindAddress": [],
    "create_app_server": ["app"],
    "find_free_port": [],
    "run_in_background": ["coro"],
    "create_client": ["ingress", "headers", "journal_value_codec"],
}


def test_the_official_harness_names_import() -> None:
    import inspect

    import framework.harness as harness

    for name, parameters in OFFICIAL_HARNESS_PARAMETERS.items():
        got = list(inspect.signature(getattr(harness, name)).parameters)
        assert got[: len(parameters)] == parameters, (name, got)
    assert harness.create_test_harness is create_test_harness
    assert harness.TestConfiguration().restate_image == "restatedev/restate:latest"
    for method in ("get_local_bind_address", "get_endpoint_connection_string", "cleanup"):
        assert getattr(harness.BindAddress, method).__isabstractmethod__


def test_the_official_building_blocks_without_docker() -> None:
    """The official harness's pieces as a ported test uses them: a "container", an app server,
    registration through the admin client, a call through the ingress client."""
    with (
        create_restate_container(f"restatedev/restate:{RESTATE_SERVER_VERSION}") as restate,
        create_app_server(svc.app) as deployment,
    ):
        assert restate.server is not None
        assert restate.get_exposed_port(8080) == restate.server.ingress_port
        assert restate.ingress_url() == (
            f"http://{restate.get_container_host_ip()}:{restate.get_exposed_port(8080)}"
        )
        assert restate.admin_url().endswith(f":{restate.get_exposed_port(9070)}")
        with restate.get_admin_client() as admin:
            registered = admin.post("/deployments", json={"uri": deployment}, timeout=30)
            assert registered.is_success, registered.text
        with restate.get_ingress_client() as ingress:
            answer = ingress.post("/ClientGreeter/greet", json="Port", timeout=30)
            assert answer.json() == "Hello, Port!"
        server = restate.server
    assert server.pid is None and restate.server is None
    port = int(deployment.rsplit(":", 1)[1])
    assert port_is_free(port), "the app server still listens"


def test_a_container_takes_server_settings_and_asgi_server_binds_where_told() -> None:
    restate = RestateContainer(
        "restatedev/restate:latest", always_replay=True, disable_retries=True
    )
    with restate.with_env("RESTATE_DEFAULT_NUM_PARTITIONS", "2"):
        assert restate.server is not None and restate.server.pid is not None
        # What the server process was started with (Linux).
        environ = Path(f"/proc/{restate.server.pid}/environ").read_bytes().split(b"\0")
        assert b"RESTATE_DEFAULT_NUM_PARTITIONS=2" in environ
        assert b"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT=0s" in environ
        assert b"RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS=1" in environ
    with pytest.raises(ValueError, match="'host:port'"):

        class Unix(BindAddress):
            def get_local_bind_address(self) -> str:
                return "unix:/tmp/app.sock"

            def get_endpoint_connection_string(self) -> str:
                return "http://localhost"

            def cleanup(self) -> None:
                pass

        AsgiServer(svc.app, Unix())
    bind = TcpSocketBindAddress()
    server = AsgiServer(svc.app, bind).start()
    try:
        assert server.thread is not None and server.thread.is_alive()
        assert not port_is_free(bind.port)
    finally:
        server.stop()
    assert server.thread is None


def test_run_in_background_runs_a_coroutine_on_its_own_loop() -> None:
    done = threading.Event()

    async def work() -> None:
        await asyncio.sleep(0.01)
        done.set()

    thread = run_in_background(work())
    assert done.wait(5.0)
    thread.join(5.0)
    assert not thread.is_alive()
    assert find_free_port() > 0
