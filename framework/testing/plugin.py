"""The pytest plugin (``pytest_plugins = ["framework.testing"]``): a restate-server per test
session and a fixture that serves apps against it. (PYTEST_DONT_REWRITE: no asserts here.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from framework.testing.environment import HarnessEnvironment
from framework.testing.session import HarnessSession

__all__ = ["pytest_addoption", "restate_harness_session", "restate_test_harness"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("restate", "Restate test harness (framework.testing)")
    group.addoption(
        "--restate-always-replay",
        action="store_true",
        default=False,
        help="run the session's restate-server so that every await suspends and every "
        "resume replays the journal",
    )
    group.addoption(
        "--restate-disable-retries",
        action="store_true",
        default=False,
        help="run the session's restate-server without retrying failed invocations",
    )


@pytest.fixture(scope="session")
def restate_harness_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HarnessSession]:
    """The session's restate-server (started on first use) and the apps served on it."""
    config = request.config
    session = HarnessSession(
        always_replay=bool(config.getoption("--restate-always-replay", default=False)),
        disable_retries=bool(config.getoption("--restate-disable-retries", default=False)),
        log_path=tmp_path_factory.mktemp("restate-harness") / "restate-server.log",
    )
    session.start()
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def restate_test_harness(
    restate_harness_session: HarnessSession,
) -> Callable[..., HarnessEnvironment]:
    """A factory: ``restate_test_harness(app)`` serves ``app`` against the session's
    restate-server (once per session) and returns a ``HarnessEnvironment``::

        pytest_plugins = ["framework.testing"]

        async def test_greet(restate_test_harness):   # with an async test runner
            env = restate_test_harness(my_module.app)
            assert await env.client.service_call(greet, "Ann") == "Hello, Ann!"

    Keyword arguments: ``service_env`` (for ``"module:attribute"`` apps), ``use_http_11``,
    ``client_timeout``.
    """
    return restate_harness_session.environment
