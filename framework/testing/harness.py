"""The official SDK's harness entry points on a local restate-server: ``TestConfiguration``,
``RestateTestHarness``, ``test_harness`` and ``create_test_harness``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from framework._dev.restate_server import RestateServer
from framework._runtime.codec import JournalValueCodec
from framework.testing.environment import HarnessEnvironment
from framework.testing.logs import LogFollower
from framework.testing.release import (
    DEFAULT_RESTATE_IMAGE,
    check_running_version,
    resolve_server_version,
)
from framework.testing.serving import AppLike, ServedApp, register_app
from framework.testing.settings import (
    CLIENT_TIMEOUT,
    SERVER_START_TIMEOUT,
    STOP_TIMEOUT,
    harness_server_env,
)

if TYPE_CHECKING:
    import httpx

    from framework.client import RestateClient

__all__ = ["RestateTestHarness", "TestConfiguration", "create_test_harness", "test_harness"]


@dataclass
class TestConfiguration:
    """Settings of a ``RestateTestHarness`` (the official SDK's name)."""

    __test__ = False  # not a pytest test class

    restate_image: str = DEFAULT_RESTATE_IMAGE
    """Which restate-server runs, named as the official harness's Docker image: the tag
    ``X.Y.Z`` of ``restatedev/restate`` runs that release from npm, ``latest`` the pinned
    default (see ``server_version_for_image``); an image that names no release is refused."""
    stream_logs: bool = False
    always_replay: bool = False
    disable_retries: bool = False
    restate_server_version: str | None = None
    """The restate-server release to run, instead of naming it by ``restate_image``."""
    server_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)
    enable_protocol_v7: bool = False
    use_http_11: bool = False
    client_timeout: float | None = CLIENT_TIMEOUT

    def __post_init__(self) -> None:
        self.server_version()  # a wrong image or version fails here, before anything starts

    def server_version(self) -> str:
        """The restate-server release these settings run."""
        return resolve_server_version(self.restate_image, self.restate_server_version)


class RestateTestHarness:
    """A restate-server plus the app under test, registered with it (start/stop, or use it
    as a context manager). ``create_test_harness`` is the async way to the same thing."""

    def __init__(self, asgi_app: AppLike, config: TestConfiguration | None = None) -> None:
        self.asgi_app = asgi_app
        self.config = config if config is not None else TestConfiguration()
        self.server: RestateServer | None = None
        self._served: ServedApp | None = None
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> HarnessEnvironment:
        """Start the server, serve and register the app; the environment to test against."""
        if self._stack is not None:
            raise RuntimeError("the harness is already started")
        from framework.client import RestateClient

        config = self.config
        version = config.server_version()
        served = ServedApp(self.asgi_app, config.service_env)
        with contextlib.ExitStack() as stack:
            server = RestateServer(
                enable_protocol_v7=config.enable_protocol_v7,
                env=harness_server_env(
                    always_replay=config.always_replay,
                    disable_retries=config.disable_retries,
                    extra=config.server_env,
                ),
                version=version,
            )
            server.start(SERVER_START_TIMEOUT)
            stack.callback(server.stop, STOP_TIMEOUT)
            check_running_version(server, version)
            if config.stream_logs and server.log_path is not None:
                self._follow(stack, server.log_path, "restate-server")
            # Stopped before the server (callbacks run last-in first-out).
            stack.callback(served.stop)
            served.start(server.log_path.parent if server.log_path is not None else None)
            if config.stream_logs and served.process is not None and served.process.log_path:
                self._follow(stack, served.process.log_path, "service")
            register_app(server, served.url, config.use_http_11)
            self.server = server
            self._served = served
            self._stack = stack.pop_all()
        return self.environment(RestateClient(server.ingress_url, timeout=config.client_timeout))

    def _follow(self, stack: contextlib.ExitStack, path: Path, prefix: str) -> None:
        follower = LogFollower(path, prefix)
        stack.callback(follower.stop)

    def environment(self, client: RestateClient) -> HarnessEnvironment:
        """The environment of the started harness, with ``client`` as its ingress client."""
        if self.server is None or self._served is None:
            raise RuntimeError("The Restate server has not been started. Use .start()")
        return HarnessEnvironment(
            ingress_url=self.server.ingress_url,
            admin_api_url=self.server.admin_url,
            client=client,
            server=self.server,
            deployment_url=self._served.url,
            service=self._served.process,
        )

    def stop(self) -> None:
        """Stop the app and the server (removing its data); safe to call more than once."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        self._served = None

    def ingress_client(self) -> httpx.Client:
        """A plain ``httpx.Client`` of the ingress (the official harness's helper)."""
        import httpx

        if self.server is None:
            raise AssertionError("The Restate server has not been started. Use .start()")
        return httpx.Client(base_url=self.server.ingress_url, trust_env=False)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def test_harness(
    app: AppLike,
    follow_logs: bool = False,
    restate_image: str = "docker.io/restatedev/restate:latest",
    always_replay: bool = False,
    disable_retries: bool = False,
) -> RestateTestHarness:
    """A ``RestateTestHarness`` for ``app``, to start (or enter with ``with``) yourself.

    The official SDK's older entry point; prefer ``create_test_harness``. ``restate_image``
    picks the restate-server release as in ``create_test_harness``.
    """
    return RestateTestHarness(
        app,
        TestConfiguration(
            restate_image=restate_image,
            stream_logs=follow_logs,
            always_replay=always_replay,
            disable_retries=disable_retries,
        ),
    )


test_harness.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function


@contextlib.asynccontextmanager
async def create_test_harness(
    app: AppLike,
    follow_logs: bool = False,
    restate_image: str = "docker.io/restatedev/restate:latest",
    always_replay: bool = False,
    disable_retries: bool = False,
    journal_value_codec: JournalValueCodec | None = None,
    *,
    restate_server_version: str | None = None,
    server_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, str] | None = None,
    enable_protocol_v7: bool = False,
    use_http_11: bool = False,
    client_timeout: float | None = CLIENT_TIMEOUT,
) -> AsyncIterator[HarnessEnvironment]:
    """Start a restate-server, serve ``app`` and register it; yield a ``HarnessEnvironment``.

    ``app`` is an ASGI app (served in this process, in a background thread) or a
    ``"module:attribute"`` string (served in a child process with ``service_env``).
    ``always_replay`` and ``disable_retries`` are described in the ``framework.testing``
    docs; ``follow_logs`` copies the server's (and a child service's) log to stderr;
    ``server_env`` adds ``RESTATE_...`` settings.

    There is no Docker here: ``restate_image`` names the restate-server release to run from
    npm. ``restatedev/restate:X.Y.Z`` (``docker.io/`` or ``ghcr.io/`` before it too) runs
    release X.Y.Z; ``:latest`` runs the pinned default, 1.7.12 (``RESTATE_SERVER_VERSION``),
    not Docker Hub's latest of the day. An image that names no release (a digest, a branch
    tag, another image) raises ValueError before anything starts; ``restate_server_version=``
    is the other way to name the release. ``RESTATE_SERVER_BIN`` (a binary of your own) wins
    over both, with a warning when it runs another release.

    ``journal_value_codec`` goes to the ingress client (``create_client``), to match a codec
    configured on the endpoint under test.

    Every step is bounded by a timeout, and everything started is stopped on exit. Starting
    blocks the event loop for about a second.
    """
    from framework.client import create_client

    harness = RestateTestHarness(
        app,
        TestConfiguration(
            restate_image=restate_image,
            stream_logs=follow_logs,
            always_replay=always_replay,
            disable_retries=disable_retries,
            restate_server_version=restate_server_version,
            server_env=dict(server_env or {}),
            service_env=dict(service_env or {}),
            enable_protocol_v7=enable_protocol_v7,
            use_http_11=use_http_11,
            client_timeout=client_timeout,
        ),
    )
    harness.start()
    try:
        assert harness.server is not None
        async with create_client(
            harness.server.ingress_url,
            journal_value_codec=journal_value_codec,
            timeout=client_timeout,
        ) as client:
            yield harness.environment(client)
    finally:
        harness.stop()
