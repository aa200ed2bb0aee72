"""Serving the app under test and registering it: an app object in this process (granian's
embedded server in a thread, the production serving path), a ``"module:attribute"`` string
in a child process (``python -m framework serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from framework._dev.processes import LOOPBACK, accepts_connections, free_port
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._dev.wait import WaitTimeout, wait_until
from framework._endpoint.asgi import ASGIApp
from framework._runtime.determinism import GUARD_ENV
from framework._runtime.determinism import install as install_determinism_guard
from framework._server.common import load_app
from framework._server.granian import granian_options, serve_embedded
from framework.exceptions import RestateServerError
from framework.testing.settings import (
    APP_GRACEFUL_TIMEOUT,
    APP_START_TIMEOUT,
    REGISTER_TIMEOUT,
    STOP_TIMEOUT,
)

__all__ = ["AppLike", "InProcessApp", "ServedApp", "register_app"]

AppLike = ASGIApp | str
"""What the harness serves: an ASGI app object, or a ``"module:attribute"`` reference."""


def _reachable_host(host: str) -> str:
    """Where to connect to a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    return LOOPBACK if host in ("", "0.0.0.0", "::", "[::]") else host


class InProcessApp:
    """An ASGI app served by granian in a background thread of this process, on
    127.0.0.1 (or ``host``: ``0.0.0.0`` to be reachable from outside too)."""

    def __init__(self, app: ASGIApp, *, port: int | None = None, host: str = LOOPBACK) -> None:
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

    @property
    def thread(self) -> threading.Thread | None:
        """The thread serving the app, while it runs."""
        return self._thread

    def start(self, timeout: float = APP_START_TIMEOUT) -> None:
        """Start serving; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"the app is already served on port {self.port}")
        thread = threading.Thread(
            target=self._run, name=f"restate-harness-app-{self.port}", daemon=True
        )
        self._thread = thread
        thread.start()

        def listening() -> bool:
            if self._error is not None:
                error, self._error = self._error, None
                thread.join(STOP_TIMEOUT)
                self._thread = None
                raise RestateServerError(
                    f"serving the app on port {self.port} failed: {error!r}"
                ) from error
            if self._started.is_set() and accepts_connections(
                self.port, _reachable_host(self.host)
            ):
                return True
            if not thread.is_alive():
                self._thread = None
                raise RestateServerError(f"serving the app on port {self.port} stopped at once")
            return False

        try:
            wait_until(
                listening, f"the app to listen on port {self.port}", timeout=timeout, interval=0.01
            )
        except WaitTimeout:
            self.stop()
            raise RestateServerError(
                f"the app did not listen on port {self.port} within {timeout:.0f}s"
            ) from None

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


class ServedApp:
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
                env={
                    GUARD_ENV: os.environ.get(GUARD_ENV, "warn"),
                    **_child_pythonpath(),
                    **self.env,
                },
                log_path=log_path,
                cwd=Path.cwd(),
            )
            self.process.start(timeout)
        else:
            install_determinism_guard()  # FRAMEWORK_DETERMINISM_GUARD, else warn
            self.in_process = InProcessApp(self.app)
            self.in_process.start(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(STOP_TIMEOUT)
        if self.in_process is not None:
            self.in_process.stop(STOP_TIMEOUT)


def register_app(server: RestateServer, url: str, use_http_11: bool) -> None:
    """Register the app served at ``url``; AssertionError (a test failure) if it fails."""
    try:
        server.register(url, use_http_11=use_http_11, timeout=REGISTER_TIMEOUT)
    except RestateServerError as error:
        raise AssertionError(f"unable to register the services at {url}: {error}") from error
