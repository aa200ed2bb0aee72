"""Test your services against a real Restate server, without Docker.

``create_test_harness(app)`` starts a restate-server (from the npm package, installed once into
``~/.cache/framework``) on free loopback ports with its data in a temporary dir, serves the app
on another free port, registers it, and yields a ``HarnessEnvironment`` with a ready ingress
client::

    from framework.testing import create_test_harness

    async def test_greet() -> None:
        async with create_test_harness(my_module.app) as env:
            assert await env.client.service_call(greet, "Ann") == "Hello, Ann!"

An app object is served in this process (granian in a background thread); a
``"module:attribute"`` string is served in a child process (``python -m framework serve``).
``restate_image=`` (the official harness's Docker image) picks the restate-server release:
``restatedev/restate:X.Y.Z`` runs X.Y.Z, ``:latest`` the pinned 1.7.12 (see
``server_version_for_image``). ``framework.harness`` has the official module's other names.
``always_replay=True`` makes the server suspend the invocation at every await that is not
complete, so every resume replays the journal: code that is not deterministic fails at once
(journal mismatch, code 570) instead of on the rare real retry. ``disable_retries=True`` makes
an invocation that fails with a retryable error fail for good after its first attempt.

As a pytest plugin (``pytest_plugins = ["framework.testing"]``) it provides one server per test
session and a factory that serves apps against it (see ``restate_test_harness``); the command
line options ``--restate-always-replay`` and ``--restate-disable-retries`` configure that
server. (PYTEST_DONT_REWRITE: the plugin has no asserts for pytest to rewrite.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from framework._devserver import (
    RESTATE_SERVER_VERSION,
    RestateServer,
    RestateServerError,
    ServiceProcess,
    free_port,
)
from framework._runtime.codec import JournalValueCodec
from framework._server.serve import ASGIApp, granian_options, load_app, serve_embedded

if TYPE_CHECKING:
    import httpx

    from framework.client import RestateClient

__all__ = [
    "HarnessEnvironment",
    "RestateTestHarness",
    "TestConfiguration",
    "always_replay_env",
    "create_test_harness",
    "disable_retries_env",
    "harness_server_env",
    "server_version_for_image",
    "test_harness",
]

_LOOPBACK = "127.0.0.1"
SERVER_START_TIMEOUT = 60.0
APP_START_TIMEOUT = 30.0
REGISTER_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = 60.0
# An in-process app gets this long to finish open requests when the harness stops.
APP_GRACEFUL_TIMEOUT = 1.0

AppLike = ASGIApp | str

DEFAULT_RESTATE_IMAGE = "restatedev/restate:latest"


def always_replay_env() -> dict[str, str]:
    """Server settings that suspend an invocation at every await that is not complete yet,
    so every resume is a full replay of the journal."""
    return {"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s"}


def disable_retries_env() -> dict[str, str]:
    """Server settings under which an invocation that fails with a retryable error is not
    retried: after its first attempt it fails for good (as if it raised ``TerminalError``).

    This is the server's default retry policy; a handler or service that sets its own
    ``invocation_retry_policy`` keeps it."""
    return {
        "RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "1",
        "RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS": "kill",
    }


def harness_server_env(
    *,
    always_replay: bool = False,
    disable_retries: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The settings the harness starts restate-server with: a small single node, plus the
    replay and retry switches, plus ``extra``."""
    env = {
        "RESTATE_DEFAULT_NUM_PARTITIONS": "4",
        "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "256 MB",
        "RESTATE_SHUTDOWN_TIMEOUT": "5s",
    }
    if always_replay:
        env.update(always_replay_env())
    if disable_retries:
        env.update(disable_retries_env())
    env.update(extra or {})
    return env


# -- which restate-server: the official harness's Docker image, mapped to an npm release ------

_RESTATE_IMAGE = re.compile(
    r"(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io|ghcr\.io)/)?"
    r"restatedev/restate(?::(?P<tag>[^:@/]+))?"
)
_RELEASE = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?")


def server_version_for_image(image: str) -> str:
    """The restate-server release (npm ``@restatedev/restate-server``) that stands in for the
    Docker image ``image``, which the official harness would run.

    ``restatedev/restate:X.Y.Z`` (also with ``docker.io/`` or ``ghcr.io/`` before it) is
    release ``X.Y.Z``; ``restatedev/restate:latest`` (or no tag) is this framework's pinned
    default, ``RESTATE_SERVER_VERSION`` (1.7.12), not whatever Docker Hub calls latest today.
    Anything else (a digest, a branch tag, another image) cannot be mapped: ValueError saying
    what to pass instead.
    """
    match = _RESTATE_IMAGE.fullmatch(image.strip())
    tag = match.group("tag") if match is not None else None
    if _names_latest(image):
        return RESTATE_SERVER_VERSION
    if tag is not None and _RELEASE.fullmatch(tag):
        return tag
    if "@" in image:
        problem = "pins an image digest, which names no restate-server release"
    elif match is not None:
        problem = f"has the tag {tag!r}, which is not a release version (X.Y.Z)"
    else:
        problem = "is not a restatedev/restate image (from Docker Hub or ghcr.io)"
    raise ValueError(
        f"restate_image={image!r} {problem}. The harness runs restate-server from npm, without "
        "Docker, so it needs a release: pass restate_image='restatedev/restate:X.Y.Z' (e.g. "
        f"'restatedev/restate:{RESTATE_SERVER_VERSION}', or ':latest' for that pinned default) "
        "or restate_server_version='X.Y.Z'. To run a restate-server binary of your own, set "
        "RESTATE_SERVER_BIN to its path."
    )


def _names_latest(image: str) -> bool:
    """``restatedev/restate`` with the tag ``latest`` or none."""
    match = _RESTATE_IMAGE.fullmatch(image.strip())
    return match is not None and match.group("tag") in (None, "latest")


def _server_version(image: str, version: str | None) -> str:
    """The release to run for ``restate_image=image`` and ``restate_server_version=version``."""
    from_image = server_version_for_image(image)
    if version is None:
        return from_image
    if _names_latest(image):
        return version  # an explicit version says more than "latest"
    if from_image != version:
        raise ValueError(
            f"restate_image={image!r} means restate-server {from_image} but "
            f"restate_server_version={version!r} was asked for too; pass only one of them"
        )
    return version


def _check_running_version(server: RestateServer, wanted: str) -> None:
    """Warn when RESTATE_SERVER_BIN (which wins over any version) runs another release."""
    if not os.environ.get("RESTATE_SERVER_BIN"):
        return
    with contextlib.suppress(RestateServerError, KeyError):
        running = str(server.version()["version"])
        if running != wanted:
            warnings.warn(
                f"restate-server {wanted} was asked for, but RESTATE_SERVER_BIN runs {running}; "
                "unset RESTATE_SERVER_BIN to run the release asked for",
                stacklevel=3,
            )


# -- the environment a test gets ------------------------------------------------------------


@dataclass
class HarnessEnvironment:
    """What a test gets from the harness: where the server is and a client of its ingress."""

    ingress_url: str
    """The URL of the Restate ingress (``http://127.0.0.1:PORT``)."""

    admin_api_url: str
    """The URL of the Restate admin API."""

    client: RestateClient
    """An ingress client (``framework.client.RestateClient``) ready to use."""

    server: RestateServer | None = None
    """The running ``RestateServer`` (its log, ``query`` on the admin API...)."""

    deployment_url: str | None = None
    """Where the app is served (what was registered)."""

    service: ServiceProcess | None = field(default=None, repr=False)
    """The child process serving the app, when it was given as ``"module:attribute"``
    (``kill()`` and ``start()`` it to test crashes)."""

    @property
    def admin_url(self) -> str:
        """The same as ``admin_api_url``."""
        return self.admin_api_url

    def _server(self) -> RestateServer:
        if self.server is None:
            raise RuntimeError("this environment has no RestateServer attached")
        return self.server

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """Run SQL on the admin API (``sys_invocation``, ``sys_journal``, ``state``...)."""
        return await asyncio.to_thread(self._server().query, sql)

    async def invocation(self, invocation_id: str) -> dict[str, Any] | None:
        """The ``sys_invocation`` row of an invocation, or None: ``status`` ("running",
        "backing-off", "completed"...), ``retry_count``, ``last_failure`` (e.g. "[570 Journal
        mismatch] ..."), ``last_failure_error_code`` (e.g. "RT0016"), ``completion_result``
        ("success"/"failure") and ``completion_failure`` (e.g. "[500] ...")."""
        if not invocation_id.startswith("inv_") or "'" in invocation_id:
            raise ValueError(f"not an invocation id: {invocation_id!r}")
        rows = await self.query(
            "SELECT id, target, status, retry_count, last_failure, last_failure_error_code, "
            "completion_result, completion_failure FROM sys_invocation "
            f"WHERE id = '{invocation_id}'"
        )
        return rows[0] if rows else None

    async def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel an invocation through the admin API (its handler sees ``TerminalError`` 409)."""
        await self._admin_patch(f"/invocations/{invocation_id}/cancel")

    async def kill_invocation(self, invocation_id: str) -> None:
        """Kill an invocation through the admin API (no compensation runs)."""
        await self._admin_patch(f"/invocations/{invocation_id}/kill")

    async def _admin_patch(self, path: str) -> None:
        import httpx

        from framework.client import HttpError

        async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
            response = await http.patch(self.admin_api_url + path)
        if not response.is_success:
            raise HttpError(response.status_code, response.text, response.text)


# -- serving an app ---------------------------------------------------------------------------


class InProcessApp:
    """An ASGI app served by granian in a background thread of this process, on
    127.0.0.1 (or ``host``: ``0.0.0.0`` to be reachable from outside too)."""

    def __init__(self, app: ASGIApp, *, port: int | None = None, host: str = _LOOPBACK) -> None:
        self.app = app
        self.port = port if port is not None else free_port()
        self.host = host
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{_reachable_host(self.host)}:{self.port}"

    def start(self, timeout: float = APP_START_TIMEOUT) -> None:
        """Start serving; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"the app is already served on port {self.port}")
        self._thread = threading.Thread(
            target=self._run, name=f"restate-harness-app-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                self._thread.join(STOP_TIMEOUT)
                self._thread = None
                raise RestateServerError(
                    f"serving the app on port {self.port} failed: {error!r}"
                ) from error
            if self._started.is_set() and _accepts_connections(self.port, self.host):
                return
            if not self._thread.is_alive():
                self._thread = None
                raise RestateServerError(f"serving the app on port {self.port} stopped at once")
            if time.monotonic() > deadline:
                self.stop()
                raise RestateServerError(
                    f"the app did not listen on port {self.port} within {timeout:.0f}s"
                )
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by start(); nothing else sees this thread
            self._error = error

    async def _serve(self) -> None:
        # Granian, in this thread's loop (its embedded server), as python -m framework serve
        # serves an app; its records go through logging (pytest captures them).
        options = granian_options(self.host, self.port, log_level="warning")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await serve_embedded(self.app, options, APP_GRACEFUL_TIMEOUT, stop=self._stop)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop serving and wait for the thread (at most ``timeout`` s); safe to repeat."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._started.clear()
        self._loop = self._stop = None

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<InProcessApp {state} port={self.port}>"


def _reachable_host(host: str) -> str:
    """Where to connect to a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    return _LOOPBACK if host in ("", "0.0.0.0", "::", "[::]") else host


def _accepts_connections(port: int, host: str = _LOOPBACK) -> bool:
    import socket

    try:
        # An IPv6 host is bracketed in binds and URLs, not in socket addresses.
        with socket.create_connection((_reachable_host(host).strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


def _child_pythonpath() -> dict[str, str]:
    """PYTHONPATH for a child serving an app reference: the current dir and this process's
    own path entries (e.g. the rootdir pytest added), not the interpreter's, so the module
    imports there as it does here."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    prefixes = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for entry in [os.getcwd(), *sys.path]:
        if not entry or entry in paths or not Path(entry).is_dir():
            continue
        resolved = str(Path(entry).resolve())
        if any(resolved == p or resolved.startswith(p + os.sep) for p in prefixes):
            continue
        paths.append(entry)
    return {"PYTHONPATH": os.pathsep.join(paths)}


class _Served:
    """An app being served, whichever way: its URL and how to stop it."""

    def __init__(self, app: AppLike, env: Mapping[str, str] | None) -> None:
        """Checks ``app`` at once, so a wrong one fails before any server starts."""
        self.app = app
        self.env = dict(env or {})
        self.in_process: InProcessApp | None = None
        self.process: ServiceProcess | None = None
        if isinstance(app, str):
            if ":" not in app:
                load_app(app)  # raises AppLoadError, which says how to write the reference
        elif not callable(app):
            raise TypeError(
                "the harness serves an ASGI app (e.g. framework.app([...])) or a "
                f"'module:attribute' string, not {type(app).__name__}"
            )
        elif self.env:
            raise ValueError("service_env only applies to apps served in a child process")

    @property
    def url(self) -> str:
        if self.process is not None:
            return self.process.url
        if self.in_process is not None:
            return self.in_process.url
        raise RuntimeError("the app is not served yet")

    def start(self, log_dir: Path | None, timeout: float = APP_START_TIMEOUT) -> None:
        if isinstance(self.app, str):
            log_path = log_dir / "service.log" if log_dir is not None else None
            self.process = ServiceProcess(
                self.app,
                env={**_child_pythonpath(), **self.env},
                log_path=log_path,
                cwd=Path.cwd(),
            )
            self.process.start(timeout)
        else:
            self.in_process = InProcessApp(self.app)
            self.in_process.start(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(STOP_TIMEOUT)
        if self.in_process is not None:
            self.in_process.stop(STOP_TIMEOUT)


class _LogFollower:
    """Copies the lines a log file gains to stderr, from a daemon thread."""

    def __init__(self, path: Path, prefix: str) -> None:
        self._path = path
        self._prefix = prefix
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"follow-{prefix}")
        self.thread.start()

    def _run(self) -> None:
        handle: IO[str] | None = None
        try:
            while not self._done.is_set():
                if handle is None:
                    try:
                        handle = self._path.open(errors="replace")
                    except FileNotFoundError:
                        self._done.wait(0.1)
                        continue
                line = handle.readline()
                if line:
                    sys.stderr.write(f"[{self._prefix}] {line}")
                else:
                    self._done.wait(0.1)
        finally:
            if handle is not None:
                handle.close()

    def stop(self) -> None:
        self._done.set()
        self.thread.join(2.0)


# -- the harness -------------------------------------------------------------------------------


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
        return _server_version(self.restate_image, self.restate_server_version)


class RestateTestHarness:
    """A restate-server plus the app under test, registered with it (start/stop, or use it
    as a context manager). ``create_test_harness`` is the async way to the same thing."""

    def __init__(self, asgi_app: AppLike, config: TestConfiguration | None = None) -> None:
        self.asgi_app = asgi_app
        self.config = config if config is not None else TestConfiguration()
        self.server: RestateServer | None = None
        self._served: _Served | None = None
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> HarnessEnvironment:
        """Start the server, serve and register the app; the environment to test against."""
        if self._stack is not None:
            raise RuntimeError("the harness is already started")
        from framework.client import RestateClient

        config = self.config
        version = config.server_version()
        served = _Served(self.asgi_app, config.service_env)
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
            _check_running_version(server, version)
            if config.stream_logs and server.log_path is not None:
                self._follow(stack, server.log_path, "restate-server")
            # Stopped before the server (callbacks run last-in first-out).
            stack.callback(served.stop)
            served.start(server.log_path.parent if server.log_path is not None else None)
            if config.stream_logs and served.process is not None and served.process.log_path:
                self._follow(stack, served.process.log_path, "service")
            _register(server, served.url, config.use_http_11)
            self.server = server
            self._served = served
            self._stack = stack.pop_all()
        return self.environment(RestateClient(server.ingress_url, timeout=config.client_timeout))

    def _follow(self, stack: contextlib.ExitStack, path: Path, prefix: str) -> None:
        follower = _LogFollower(path, prefix)
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


def _register(server: RestateServer, url: str, use_http_11: bool) -> None:
    try:
        server.register(url, use_http_11=use_http_11, timeout=REGISTER_TIMEOUT)
    except RestateServerError as error:
        raise AssertionError(f"unable to register the services at {url}: {error}") from error


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
    ``always_replay`` and ``disable_retries`` are described in the module docs;
    ``follow_logs`` copies the server's (and a child service's) log to stderr;
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


# -- the pytest plugin -------------------------------------------------------------------------


class HarnessSession:
    """One restate-server shared by a test session, and the apps served against it.

    Each app (an ASGI app object, or a ``"module:attribute"`` string) is served and registered
    once, the first time a test asks for it; everything stops when the session ends.
    """

    def __init__(
        self,
        *,
        always_replay: bool = False,
        disable_retries: bool = False,
        server_env: Mapping[str, str] | None = None,
        enable_protocol_v7: bool = False,
        log_path: Path | None = None,
        server: RestateServer | None = None,
    ) -> None:
        """``server``: a RestateServer the suite already runs, to use instead of starting one
        (the other settings are then ignored, and ``stop`` leaves it running)."""
        self._own_server = server is None
        self.server = server or RestateServer(
            enable_protocol_v7=enable_protocol_v7,
            env=harness_server_env(
                always_replay=always_replay, disable_retries=disable_retries, extra=server_env
            ),
            log_path=log_path,
        )
        self._apps: dict[Any, tuple[AppLike, _Served]] = {}

    def start(self) -> None:
        if self._own_server or not self.server.running():
            self.server.start(SERVER_START_TIMEOUT)

    def environment(
        self,
        app: AppLike,
        *,
        service_env: Mapping[str, str] | None = None,
        use_http_11: bool = False,
        client_timeout: float | None = CLIENT_TIMEOUT,
    ) -> HarnessEnvironment:
        """Serve ``app`` (once per session) against the server; an environment whose client
        opens a connection per request, so it works from any event loop."""
        from framework.client import RestateClient

        identity = app if isinstance(app, str) else id(app)
        cache_key = (identity, tuple(sorted((service_env or {}).items())))
        entry = self._apps.get(cache_key)
        if entry is None:
            served = _Served(app, service_env)
            log_dir = self.server.log_path.parent if self.server.log_path else None
            if log_dir is not None and isinstance(app, str):
                log_dir = log_dir / f"service-{len(self._apps)}"
                log_dir.mkdir(parents=True, exist_ok=True)
            try:
                served.start(log_dir)
                _register(self.server, served.url, use_http_11)
            except BaseException:
                served.stop()
                raise
            entry = (app, served)  # the app is kept alive, so its id() stays unique
            self._apps[cache_key] = entry
        served = entry[1]
        return HarnessEnvironment(
            ingress_url=self.server.ingress_url,
            admin_api_url=self.server.admin_url,
            client=RestateClient(self.server.ingress_url, timeout=client_timeout),
            server=self.server,
            deployment_url=served.url,
            service=served.process,
        )

    def stop(self) -> None:
        for _, served in reversed(list(self._apps.values())):
            served.stop()
        self._apps.clear()
        if self._own_server:
            self.server.stop(STOP_TIMEOUT)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the plugin part
    pytest = None  # type: ignore[assignment]

if pytest is not None:

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
