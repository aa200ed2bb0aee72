"""The official SDK's ``restate.harness`` names, on this framework's harness without Docker.

Tests written against ``restate.harness`` run after changing the import to
``framework.harness``. ``create_test_harness``, ``test_harness``, ``RestateTestHarness``,
``TestConfiguration`` and ``HarnessEnvironment`` are ``framework.testing``'s (see there); the
building blocks the official harness is made of are here, with the same parameters:

- ``RestateContainer`` / ``create_restate_container`` run restate-server as a local process
  (the npm release, installed once into ``~/.cache/framework``) where the official ones run
  its Docker image, with the same methods (``ingress_url()``, ``admin_url()``,
  ``get_admin_client()``, ``get_ingress_client()``, ``start``/``stop``) and the
  testcontainers calls tests use on it (``with_env``, ``get_container_host_ip``,
  ``get_exposed_port(8080 | 9070)``). A test porting them keeps working rather than being told
  to rewrite: no Docker daemon is needed. The image names the release:
  ``restatedev/restate:X.Y.Z`` runs X.Y.Z, ``:latest`` the pinned 1.7.12, anything else is
  refused with what to pass instead (``framework.testing.server_version_for_image``).
- ``AsgiServer``, ``TcpSocketBindAddress``, ``create_app_server`` serve an app in this
  process. The server runs on this machine, so an app is bound to and registered at
  ``127.0.0.1`` rather than ``0.0.0.0`` and ``host.docker.internal``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from framework._dev.processes import free_port
from framework._dev.restate_server import RestateServer
from framework._endpoint.asgi import ASGIApp
from framework._runtime.codec import JournalValueCodec
from framework.client import create_client
from framework.testing.environment import HarnessEnvironment
from framework.testing.harness import (
    RestateTestHarness,
    TestConfiguration,
    create_test_harness,
    test_harness,
)
from framework.testing.logs import LogFollower
from framework.testing.release import (
    DEFAULT_RESTATE_IMAGE,
    check_running_version,
    server_version_for_image,
)
from framework.testing.serving import InProcessApp
from framework.testing.settings import SERVER_START_TIMEOUT, STOP_TIMEOUT, harness_server_env

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AsgiServer",
    "BindAddress",
    "HarnessEnvironment",
    "JournalValueCodec",
    "RestateContainer",
    "RestateTestHarness",
    "TcpSocketBindAddress",
    "TestConfiguration",
    "create_app_server",
    "create_client",
    "create_restate_container",
    "create_test_harness",
    "find_free_port",
    "run_in_background",
    "test_harness",
]

# The ports of the official image, which tests pass to get_exposed_port.
_INGRESS_PORT = 8080
_ADMIN_PORT = 9070


def find_free_port() -> int:
    """A TCP port nothing listens on right now (checked on 127.0.0.1)."""
    return free_port()


def run_in_background(coro: Coroutine[Any, Any, Any]) -> threading.Thread:
    """Run ``coro`` on its own event loop in a daemon thread, started; returns the thread."""
    thread = threading.Thread(target=asyncio.run, args=(coro,), daemon=True)
    thread.start()
    return thread


# -- serving the app ---------------------------------------------------------------------------


class BindAddress(abc.ABC):
    """Where ``AsgiServer`` listens, and the URL the Restate server reaches it at."""

    @abc.abstractmethod
    def get_local_bind_address(self) -> str:
        """The ``host:port`` to listen on."""

    @abc.abstractmethod
    def get_endpoint_connection_string(self) -> str:
        """The deployment URL to register with the Restate server."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release what the address holds, once the server stopped."""


class TcpSocketBindAddress(BindAddress):
    """A free TCP port on 127.0.0.1 (the Restate server runs on this machine)."""

    def __init__(self) -> None:
        self.port = find_free_port()

    def get_local_bind_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get_endpoint_connection_string(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cleanup(self) -> None:
        pass  # nothing is held: the port is only a number until the server binds it


class AsgiServer:
    """Serves an ASGI app with granian in a background thread, at ``bind_address``.

    ``start`` returns once the port accepts connections (so registering right after it
    works), or raises if the app could not be served.
    """

    def __init__(self, asgi_app: ASGIApp, bind_address: BindAddress) -> None:
        self.asgi_app = asgi_app
        self.bind_address = bind_address
        host, _, port = bind_address.get_local_bind_address().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                "AsgiServer serves over TCP: get_local_bind_address() must return 'host:port', "
                f"not {bind_address.get_local_bind_address()!r}"
            )
        self._app = InProcessApp(asgi_app, port=int(port), host=host)

    @property
    def thread(self) -> threading.Thread | None:
        """The thread serving the app, while it runs."""
        return self._app.thread

    def start(self) -> Self:
        self._app.start()
        return self

    def stop(self) -> None:
        """Stop serving (open requests get a moment to finish); safe to repeat."""
        self._app.stop(STOP_TIMEOUT)


@contextlib.contextmanager
def create_app_server(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on a free port for the ``with`` block; yields the URL to register."""
    bind_address = TcpSocketBindAddress()
    server = AsgiServer(app, bind_address).start()
    try:
        yield bind_address.get_endpoint_connection_string()
    finally:
        server.stop()
        bind_address.cleanup()


# -- the Restate server ------------------------------------------------------------------------


class RestateContainer:
    """A restate-server where the official harness has a Docker container of ``image``.

    It is a local process: the release ``image`` names (``restatedev/restate:X.Y.Z``, or
    ``:latest`` for the pinned 1.7.12) from npm, on free loopback ports, its data in a
    temporary dir removed by ``stop``. An image that names no release raises ValueError here,
    saying what to pass instead.
    """

    log_thread: threading.Thread | None = None

    def __init__(self, image: str, always_replay: bool, disable_retries: bool) -> None:
        self.image = image
        self.version = server_version_for_image(image)
        self.always_replay = always_replay
        self.disable_retries = disable_retries
        self.server: RestateServer | None = None
        """The running restate-server (its log, ``query`` on the admin API...)."""
        self._env: dict[str, str] = {}
        self._follower: LogFollower | None = None

    def with_env(self, key: str, value: str) -> Self:
        """Start the server with ``key=value`` in its environment (``RESTATE_...``)."""
        self._env[key] = value
        return self

    def start(self, stream_logs: bool = False) -> Self:
        """Start the server; returns once it is healthy. ``stream_logs`` copies its log to
        stderr."""
        if self.server is not None:
            raise RuntimeError(f"the restate-server of {self.image} is already started")
        server = RestateServer(
            env=harness_server_env(
                always_replay=self.always_replay,
                disable_retries=self.disable_retries,
                extra=self._env,
            ),
            version=self.version,
        )
        server.start(SERVER_START_TIMEOUT)
        self.server = server
        check_running_version(server, self.version)
        if stream_logs and server.log_path is not None:
            self._follower = LogFollower(server.log_path, "restate-server")
            self.log_thread = self._follower.thread
        return self

    def stop(self) -> None:
        """Stop the server and remove its data; safe to repeat."""
        server, self.server = self.server, None
        if server is not None:
            server.stop(STOP_TIMEOUT)
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()

    def _running(self) -> RestateServer:
        if self.server is None:
            raise RuntimeError(f"the restate-server of {self.image} is not started; call start()")
        return self.server

    def ingress_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the ingress."""
        return self._running().ingress_url

    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the admin API."""
        return self._running().admin_url

    def get_admin_client(self) -> httpx.Client:
        """An ``httpx.Client`` of the admin API (close it when done)."""
        import httpx

        return httpx.Client(base_url=self.admin_url(), trust_env=False)

    def get_ingress_client(self) -> httpx.Client:
        """An ``httpx.Client`` of the ingress (close it when done)."""
        import httpx

        return httpx.Client(base_url=self.ingress_url(), trust_env=False)

    def get_container_host_ip(self) -> str:
        """Where the server listens: this machine's loopback."""
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        """The local port standing for the image's port 8080 (ingress) or 9070 (admin)."""
        server = self._running()
        ports = {_INGRESS_PORT: server.ingress_port, _ADMIN_PORT: server.admin_port}
        local = ports.get(int(port))
        if local is None:
            raise ValueError(
                f"restate-server exposes the ingress ({_INGRESS_PORT}) and the admin API "
                f"({_ADMIN_PORT}) here, not port {port}"
            )
        return local

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def create_restate_container(
    restate_image: str = DEFAULT_RESTATE_IMAGE,
    always_replay: bool = False,
    disable_retries: bool = False,
    stream_logs: bool = False,
) -> Iterator[RestateContainer]:
    """A started ``RestateContainer`` (a local restate-server, see there) for the ``with``
    block; ``always_replay`` and ``disable_retries`` as in ``create_test_harness``."""
    restate = RestateContainer(restate_image, always_replay, disable_retries)
    restate.start(stream_logs)
    try:
        yield restate
    finally:
        restate.stop()
