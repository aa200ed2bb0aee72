"""Serve an ASGI app for the Restate server's HTTP/2 connections: on granian by default,
on hypercorn with ``FRAMEWORK_SERVER=hypercorn``.

Granian (Rust, hyper) serves h2c with prior knowledge and HTTP/1.1 on one port and holds
against most hostile HTTP/2 peers (bounded streams and header blocks, reset and control-frame
budgets, backpressure): ``tests/test_abuse.py`` measures each attack class, and the README's
threat model lists what it does not hold against. The Restate server keeps a
few long-lived connections open and multiplexes every invocation over them, so the stream
limit per connection is raised to ``GRANIAN_MAX_CONCURRENT_STREAMS``.

Shutdown is graceful: on SIGTERM or SIGINT the server stops accepting, requests in flight
(invocations) get up to ``graceful_timeout`` seconds to finish, and whatever still runs then
is cut off (the Restate server retries those invocations from their journal). An app given
as ``"module:attribute"`` is served from ``workers`` processes that granian supervises; an app
object is served in this process (granian's embedded server).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_for_processes
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from framework._endpoint.asgi import ASGIApp
from framework._runtime.logging import configure_default_logging
from framework.exceptions import AppLoadError, ServeError

if TYPE_CHECKING:  # hypercorn is optional: pip install 'framework[hypercorn]'
    from hypercorn.config import Config, Sockets

__all__ = [
    "GRACEFUL_TIMEOUT",
    "LOG_LEVELS",
    "ASGIApp",
    "AppLoadError",
    "ServeError",
    "hypercorn_config",
    "load_app",
    "serve",
]

H2_MAX_CONCURRENT_STREAMS = 10_000
KEEP_ALIVE_TIMEOUT = 3600.0  # seconds; the server closes idle connections itself (5 min)
GRACEFUL_TIMEOUT = 3.0  # seconds given to open requests on shutdown
# Which HTTP server runs the app: granian (the default), or hypercorn (as the official SDK's
# users serve it; the benchmarks compare both on it).
SERVER = os.environ.get("FRAMEWORK_SERVER", "granian").lower()
# Set for granian's worker processes: the log level ``serve`` was given.
_LOG_LEVEL_ENV = "FRAMEWORK_SERVE_LOG_LEVEL"
# Request-body chunks hypercorn may queue per stream before it stops reading the connection;
# a stream whose handler is slow to read must not stall the others sharing the connection.
MAX_APP_QUEUE_SIZE = 256
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# Extra time a supervisor gives its workers beyond their grace period before SIGTERM/SIGKILL.
_WORKER_STOP_MARGIN = 5.0
# Set by ``python -m framework dev`` on the service it runs: after importing the app, the
# service writes the source files of every loaded module there (JSON list), to be watched.
MODULES_FILE_ENV = "FRAMEWORK_DEV_MODULES_FILE"

_log = logging.getLogger("framework.serve")


def hypercorn_config(
    bind: str | Sequence[str],
    *,
    workers: int = 1,
    graceful_timeout: float = GRACEFUL_TIMEOUT,
) -> Config:
    """A hypercorn ``Config`` bound to ``bind`` ("HOST:PORT", or several) with the limits raised."""
    try:
        from hypercorn.config import Config
    except ImportError:
        raise ServeError(
            "FRAMEWORK_SERVER=hypercorn needs hypercorn: pip install 'framework[hypercorn]'"
        ) from None
    config = Config()
    config.bind = [bind] if isinstance(bind, str) else list(bind)
    config.workers = workers
    config.h2_max_concurrent_streams = H2_MAX_CONCURRENT_STREAMS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    config.keep_alive_max_requests = sys.maxsize
    config.graceful_timeout = graceful_timeout
    config.max_app_queue_size = MAX_APP_QUEUE_SIZE
    config.accesslog = None
    return config


def load_app(ref: str) -> ASGIApp:
    """Import ``"module:attribute"`` (the attribute may be dotted) and return the app."""
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppLoadError(
            f"{ref!r} is not an app reference; write MODULE:ATTRIBUTE, e.g. services.app:app"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppLoadError(
                f"cannot import module {module_name!r} (from {ref!r}): no module named "
                f"{missing!r}. Run from the directory that contains it, or add that directory "
                "to PYTHONPATH."
            ) from None
        raise
    target: Any = module
    done: list[str] = []
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            owner = f"{module_name}:{'.'.join(done)}" if done else f"module {module_name}"
            raise AppLoadError(
                f"{owner} has no attribute {part!r} (from {ref!r}); check the name after ':'"
            ) from None
        done.append(part)
    if not callable(target):
        raise AppLoadError(f"{ref!r} is a {type(target).__name__}, not an ASGI app")
    return cast(ASGIApp, target)


def _level(log_level: str | None) -> int | None:
    if log_level is None:
        return None
    if log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    level: int = getattr(logging, log_level.upper())
    return level


def _setup_logging(log_level: str | None, config: Config | None = None) -> None:
    """INFO (or ``log_level``) records to stderr tagged with the invocation id, unless the
    app configured logging; the server's lines (hypercorn's ``config``, or granian's through
    ``granian_log_config``) go through the same handlers."""
    level = _level(log_level)
    if not configure_default_logging(logging.INFO if level is None else level) and level:
        logging.getLogger().setLevel(level)  # the app's handlers, at the level asked for
    if config is not None:
        config.errorlog = logging.getLogger("hypercorn.error")


def _report_modules() -> None:
    """For ``python -m framework dev``: write the source files of the loaded modules."""
    target = os.environ.get(MODULES_FILE_ENV)
    if not target:
        return
    files = sorted(
        {
            str(Path(path).resolve())
            for module in list(sys.modules.values())
            if isinstance(path := getattr(module, "__file__", None), str) and path.endswith(".py")
        }
    )
    partial = Path(f"{target}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(files))
    partial.replace(target)


def _listen(config: Config) -> Sockets:
    # Bound once here and shared with the workers, so without SO_REUSEPORT (which hypercorn
    # sets when workers > 1): a second server started by mistake on the same port must fail
    # instead of silently taking half of the connections.
    workers, config.workers = config.workers, 1
    try:
        return config.create_sockets()
    except OSError as error:
        raise ServeError(
            f"cannot listen on {', '.join(config.bind)}: {error.strerror or error}"
        ) from None
    finally:
        config.workers = workers


def _close(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()


async def _serve_sockets(
    app: ASGIApp,
    config: Config,
    sockets: Sockets,
    also_stop_when: Callable[[], bool] | None = None,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Serve on ``sockets`` until one of ``signals`` (or ``also_stop_when()``), then drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def begin_shutdown() -> None:
        if not stop.is_set():
            _log.info(
                "shutting down: no new requests; open ones get up to %.3g s to finish",
                config.graceful_timeout,
            )
            stop.set()

    async def poll() -> None:
        assert also_stop_when is not None
        while not stop.is_set():
            if also_stop_when():
                begin_shutdown()
            await asyncio.sleep(0.1)

    for sig in signals:
        loop.add_signal_handler(sig, begin_shutdown)
    poller = loop.create_task(poll()) if also_stop_when is not None else None
    try:
        from hypercorn.asyncio.run import worker_serve
        from hypercorn.typing import Framework
        from hypercorn.utils import wrap_app

        await worker_serve(
            wrap_app(cast(Framework, app), config.wsgi_max_body_size, "asgi"),
            config,
            sockets=sockets,
            shutdown_trigger=stop.wait,
        )
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        for sig in signals:
            loop.remove_signal_handler(sig)


def serve(
    app_ref_or_app: str | ASGIApp,
    bind: str | Sequence[str] = "127.0.0.1:9080",
    *,
    workers: int = 1,
    graceful_timeout: float = GRACEFUL_TIMEOUT,
    log_level: str | None = None,
) -> None:
    """Serve an app (or ``"module:attribute"``) on ``bind`` until SIGTERM or SIGINT.

    Unless the app configured logging, ``log_level`` (default INFO) records go to stderr
    tagged with the invocation id (see ``framework.getLogger``). ``workers > 1`` serves from
    that many processes (the app must then be given as ``"module:attribute"``). Returns after
    a graceful shutdown; raises ``AppLoadError`` or ``ServeError``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if graceful_timeout < 0:
        raise ValueError(f"graceful_timeout must not be negative, not {graceful_timeout}")
    _level(log_level)  # an unknown level fails before anything starts
    if isinstance(app_ref_or_app, str):
        app = load_app(app_ref_or_app)  # in every case: fail here, before binding
        _report_modules()
    elif workers > 1:
        raise ValueError("workers > 1 needs the app as a 'module:attribute' reference")
    else:
        app = app_ref_or_app
    if SERVER != "hypercorn":
        _serve_on_granian(app_ref_or_app, bind, workers, graceful_timeout, log_level)
        return
    config = hypercorn_config(bind, workers=workers, graceful_timeout=graceful_timeout)
    _setup_logging(log_level, config)
    sockets = _listen(config)
    try:
        if workers == 1:
            asyncio.run(_serve_sockets(app, config, sockets))
        else:
            assert isinstance(app_ref_or_app, str)
            _supervise(app_ref_or_app, config, sockets, log_level)
    finally:
        _close(sockets)


# -- granian ----------------------------------------------------------------------------------


def granian_options(host: str, port: int, log_level: str | None = None) -> dict[str, Any]:
    """What granian is given, served by processes (``MPServer``) or in-process (embedded)."""
    from granian.constants import HTTPModes, Interfaces

    return {
        "address": host,
        "port": port,
        "interface": Interfaces.ASGI,
        "http": HTTPModes.auto,  # h2c with prior knowledge and HTTP/1.1 on one port
        "http2_settings": granian_http2_settings(),
        "websockets": False,
        "log_dictconfig": granian_log_config(log_level),
        "log_level": (log_level or "info").lower(),
    }


def granian_http2_settings() -> Any:
    """HTTP/2 limits for the Restate server's long-lived, many-stream connections."""
    from granian.http import HTTP2Settings

    return HTTP2Settings(
        max_concurrent_streams=GRANIAN_MAX_CONCURRENT_STREAMS,
        # Restate's headers are small; hyper's 16 MiB default let an HPACK bomb of 0.2 MB
        # make a worker hold ~15 MB of header data per stream (tests/test_abuse.py).
        max_headers_size=16 * 1024,
        initial_connection_window_size=H2_CONNECTION_WINDOW,
        initial_stream_window_size=H2_STREAM_WINDOW,
        keep_alive_timeout=int(KEEP_ALIVE_TIMEOUT),
    )


# Big windows: a journal replay is one large upload. The connection's also bounds how many
# small DATA frames hyper lets wait unread before it calls the peer abusive (GOAWAY
# ENHANCE_YOUR_CALM "too_many_data_frames": half the window, in bytes): each new invocation
# sends ~440 bytes in small frames, so 16 MiB admits ~19,000 of them waiting at once, past the
# stream limit (tests/test_streams.py opens 5,000 on one connection); 1 MiB let ~1,200.
H2_CONNECTION_WINDOW = 16 << 20
# Each open stream costs a worker ~17-27 KB while it waits: ~5,000 (what tests/test_streams.py
# holds on one connection, more than a Restate server's burst needs) stays within the abuse
# tests' memory bound; 10,000 held by an attacker cost +300 MB.
GRANIAN_MAX_CONCURRENT_STREAMS = 5_120
H2_STREAM_WINDOW = 1 << 20


def granian_log_config(log_level: str | None) -> dict[str, Any]:
    """Granian's records (listening, workers started and stopped, shutting down) through
    the root logger's handlers, ours or the app's, at the level ``serve`` was given."""
    granian_level = (log_level or "info").upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {},
        "loggers": {
            "_granian": {"level": granian_level, "propagate": True, "handlers": []},
            "granian.access": {"level": "WARNING", "propagate": True, "handlers": []},
        },
    }


class _DropEmbeddedNotice(logging.Filter):
    """Granian warns that its embedded server is experimental each time one starts (the
    harness starts many); the notice says nothing about the app."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()


def _host_port(bind: str | Sequence[str]) -> tuple[str, int]:
    binds = [bind] if isinstance(bind, str) else list(bind)
    if len(binds) != 1:
        raise ValueError(f"granian serves one address, not {binds!r}: pass one HOST:PORT")
    host, sep, port = binds[0].rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind {binds[0]!r} is not HOST:PORT, e.g. 127.0.0.1:9080")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_free(host: str, port: int) -> None:
    """Fail with a clear ServeError when the address is taken (granian would only log it)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def load_app_in_worker(app_ref: str) -> ASGIApp:
    """Granian's target loader in each worker process: our logging, then the app.

    A worker must not outlive its supervisor: killed with it (SIGKILL included), it frees
    the port at once, and the Restate server retries what it was running elsewhere.
    """
    _die_with_parent(signal.SIGKILL)
    if os.getppid() == 1:  # the supervisor died before the line above
        os._exit(1)
    level = os.environ.get(_LOG_LEVEL_ENV) or None
    _setup_logging(level)
    return load_app(app_ref)


def _quiet_embedded_notice() -> None:
    granian_logger = logging.getLogger("_granian")
    if not any(isinstance(f, _DropEmbeddedNotice) for f in granian_logger.filters):
        granian_logger.addFilter(_DropEmbeddedNotice())


def _serve_on_granian(
    app_ref_or_app: str | ASGIApp,
    bind: str | Sequence[str],
    workers: int,
    graceful_timeout: float,
    log_level: str | None,
) -> None:
    # Granian's allocator (jemalloc) keeps freed pages by default: after a burst (or an
    # attack) a worker would stay at its peak. jemalloc reads this once, when granian's
    # extension loads: before any import of granian.
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
    host, port = _host_port(bind)
    _check_free(host, port)
    _setup_logging(log_level)
    options = granian_options(host, port, log_level)
    if not isinstance(app_ref_or_app, str):
        asyncio.run(serve_embedded(app_ref_or_app, options, graceful_timeout))
        return
    from granian.server.mp import MPServer

    if log_level is not None:
        os.environ[_LOG_LEVEL_ENV] = log_level
    from granian.constants import RuntimeModes

    server = MPServer(
        app_ref_or_app,
        workers=workers,
        # One Rust thread per worker drives all its connections ("st"): less CPU per
        # invocation than granian's default in bench/e2e.py (e.g. 2.1 vs 2.6 ms for ten steps).
        runtime_mode=RuntimeModes.st,
        loop=_event_loop(),
        workers_kill_timeout=max(1, math.ceil(graceful_timeout)),
        working_dir=Path.cwd(),
        **options,
    )
    _log.info(
        "serving %s on http://%s:%d (%d worker%s)",
        app_ref_or_app,
        host,
        port,
        workers,
        "" if workers == 1 else "s",
    )
    try:
        server.serve(target_loader=load_app_in_worker)
    except SystemExit as exit_:
        if exit_.code:
            raise ServeError(f"a worker process failed (exit status {exit_.code})") from None


def _event_loop() -> Any:
    """uvloop where it is installed (a dependency on Linux and macOS): 11-17 % less CPU per
    invocation than asyncio's own loop in bench/e2e.py; else asyncio's."""
    from granian.constants import Loops

    try:
        import uvloop  # noqa: F401
    except ImportError:
        return Loops.asyncio
    return Loops.uvloop


async def serve_embedded(
    app: ASGIApp,
    options: dict[str, Any],
    graceful_timeout: float,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` in this process and loop until ``stop`` is set (or SIGTERM/SIGINT when
    no event is given); requests in flight then get ``graceful_timeout`` seconds."""
    from granian.server.embed import Server

    _quiet_embedded_notice()
    server = Server(app, **options)
    server.workers_kill_timeout = graceful_timeout  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    serving = loop.create_task(server.serve())
    try:
        waiting = loop.create_task(stop.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            waiting.cancel()
            serving.result()  # raises what stopped it (a failed lifespan startup...)
            return
        server.stop()  # type: ignore[no-untyped-call]
        # Granian's embedded join raises TimeoutError once the grace period is over (the
        # worker is cancelled then): that is the end of a graceful stop, not a failure.
        with contextlib.suppress(TimeoutError):
            await serving
    finally:
        if own_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


# -- several worker processes (hypercorn) ---------------------------------------------------


def _die_with_parent(signum: signal.Signals = signal.SIGTERM) -> None:
    """On Linux, get ``signum`` when the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signum))  # PR_SET_PDEATHSIG


def _worker(
    app_ref: str, config: Config, sockets: Sockets, log_level: str | None, supervisor: int
) -> None:
    """One worker process: import the app and serve the shared sockets until SIGTERM (which
    the supervisor sends) or until the supervisor is gone."""
    _die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group; the supervisor handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != supervisor:  # the supervisor died before the line above
        return
    app = load_app(app_ref)
    _setup_logging(log_level, config)
    asyncio.run(
        _serve_sockets(
            app,
            config,
            sockets,
            also_stop_when=lambda: os.getppid() != supervisor,
            signals=(signal.SIGTERM,),
        )
    )


def _supervise(app_ref: str, config: Config, sockets: Sockets, log_level: str | None) -> None:
    """Run ``config.workers`` worker processes on ``sockets`` until SIGTERM/SIGINT.

    A worker that exits on its own stops the others (gracefully) and raises ``ServeError``:
    a process manager (or the container runtime) restarts the whole server.
    """
    context = multiprocessing.get_context("spawn")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes: list[BaseProcess] = []
    failure: str | None = None
    try:
        signal.signal(signal.SIGTERM, on_signal)
        # The workers inherit an ignored SIGINT (a Python handler would not survive the exec):
        # a Ctrl-C while they start must not kill them half way; they stop when told to.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for index in range(config.workers):
            process = context.Process(
                target=_worker,
                args=(app_ref, config, sockets, log_level, os.getpid()),
                name=f"framework-worker-{index}",
            )
            process.start()
            processes.append(process)
        signal.signal(signal.SIGINT, on_signal)
        _log.info(
            "serving %s from %d worker processes (pids %s)",
            app_ref,
            len(processes),
            ", ".join(str(p.pid) for p in processes),
        )
        while not stopping:
            wait_for_processes([p.sentinel for p in processes], timeout=0.2)
            dead = [p for p in processes if p.exitcode is not None]
            if dead and not stopping:
                failure = ", ".join(
                    f"{p.name} (pid {p.pid}) exited with code {p.exitcode}" for p in dead
                )
                _log.error("%s; stopping the other workers", failure)
                break
    finally:
        for worker in processes:
            if worker.exitcode is None and worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)  # a graceful stop
        deadline = time.monotonic() + config.graceful_timeout + _WORKER_STOP_MARGIN
        for worker in processes:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in processes:
            if worker.exitcode is None:
                _log.warning(
                    "%s (pid %s) did not stop in time; killing it", worker.name, worker.pid
                )
                worker.kill()
                worker.join()
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    if failure is not None:
        raise ServeError(failure)
