"""Fixtures for the whole suite: real restate-servers (v6 and v7) and service child processes.

- ``restate_server`` / ``restate_server_v7``: one server per session each, started on first use
  (the v7 one with the experimental protocol v7 switch), stopped at the end. Server settings
  from the environment (``RESTATE_...``) reach both, e.g.
  ``RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT=0s pytest`` to replay at every await.
- ``service_process(app_ref, env=None)``: serves ``"tests.module:app"`` in a child process
  (cwd = repo root) and returns the started ``ServiceProcess``; stopped after the test.

Set ``CI=true`` (or ``FRAMEWORK_TEST_LOGS=1``) to attach server and service log tails to
failing tests' reports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from framework._dev.processes import live_processes  # noqa: E402
from framework._dev.restate_server import RestateServer  # noqa: E402
from framework._dev.service_process import ServiceProcess  # noqa: E402
from framework.testing import HarnessSession  # noqa: E402

# The suite uses its own test harness (framework.testing) as a user would, on the session's
# default restate-server (see `restate_harness_session` below).
pytest_plugins = ["framework.testing"]

ServiceFactory = Callable[..., ServiceProcess]


def _child_pythonpath() -> str:
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        paths.insert(0, str(ROOT))
    return os.pathsep.join(paths)


def _start_server(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    v7: bool,
    env: dict[str, str] | None = None,
) -> RestateServer:
    log_dir = tmp_path_factory.mktemp(name)
    server = RestateServer(enable_protocol_v7=v7, env=env, log_path=log_dir / "restate-server.log")
    server.start()
    return server


@pytest.fixture(scope="session")
def restate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestateServer]:
    """A restate-server with default settings (protocol v6 at most), for the session."""
    server = _start_server(tmp_path_factory, "restate", v7=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def restate_harness_session(restate_server: RestateServer) -> Iterator[HarnessSession]:
    """The harness plugin's session, on the suite's default server (one server, not two)."""
    session = HarnessSession(server=restate_server)
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def restate_server_replaying(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RestateServer]:
    """A v7 restate-server that suspends at every await that is not complete (so every
    resume is a full replay) and sends no eager state (so every read is lazy)."""
    server = _start_server(
        tmp_path_factory,
        "restate-replaying",
        v7=True,
        env={
            "RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s",
            "RESTATE_WORKER__INVOKER__DISABLE_EAGER_STATE": "true",
        },
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def restate_server_v7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestateServer]:
    """A restate-server with ``RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7=true``, for the session."""
    server = _start_server(tmp_path_factory, "restate_v7", v7=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[ServiceFactory]:
    """A factory: ``service_process("tests.mod:app", env={...})`` -> a started ServiceProcess."""
    started: list[ServiceProcess] = []

    def start(
        app_ref: str, env: dict[str, str] | None = None, *, port: int | None = None
    ) -> ServiceProcess:
        child_env = {"PYTHONPATH": _child_pythonpath(), **(env or {})}
        name = app_ref.replace(":", "-").replace(".", "_")
        log_path = tmp_path / f"service-{len(started)}-{name}.log"
        service = ServiceProcess(app_ref, port=port, env=child_env, log_path=log_path, cwd=ROOT)
        started.append(service)
        service.start()
        return service

    try:
        yield start
    finally:
        for service in reversed(started):
            service.stop()


def _show_logs() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true") or bool(
        os.environ.get("FRAMEWORK_TEST_LOGS")
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _show_logs():
        for child in live_processes():
            if isinstance(child, RestateServer):
                title = "restate-server v7" if child.enable_protocol_v7 else "restate-server"
            elif isinstance(child, ServiceProcess):
                title = f"service {child.app_ref}"
            else:
                title = child.kind
            report.sections.append((f"{title} log tail ({child.log_path})", child.log_tail(60)))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test not marked ``fast`` needs a server or a child process: mark it ``server``,
    so that ``pytest -m "not server"`` and ``pytest -m fast`` pick the same fast lane."""
    for item in items:
        if item.get_closest_marker("fast") is None:
            item.add_marker(pytest.mark.server)
