"""Serving on granian (Rust, hyper): h2c with prior knowledge and HTTP/1.1 on one port, from
worker processes granian supervises (an app reference) or in this process (an app object).

Granian holds against most hostile HTTP/2 peers (bounded streams and header blocks, reset
and control-frame budgets, backpressure): ``tests/test_abuse.py`` measures each attack
class, and the README's threat model lists what it does not hold against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework._endpoint.asgi import ASGIApp
from framework.exceptions import ServeError

if TYPE_CHECKING:  # hypercorn is optional: pip install 'framework[hypercorn]'
    pass
from framework._server.common import (
    KEEP_ALIVE_TIMEOUT,
    die_with_parent,
    load_app,
    setup_logging,
)

_log = logging.getLogger("framework.serve")

# Set for granian's worker processes: the log level ``serve`` was given.
LOG_LEVEL_ENV = "FRAMEWORK_SERVE_LOG_LEVEL"


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
    die_with_parent(signal.SIGKILL)
    if os.getppid() == 1:  # the supervisor died before the line above
        os._exit(1)
    level = os.environ.get(LOG_LEVEL_ENV) or None
    setup_logging(level)
    return load_app(app_ref)


def _quiet_embedded_notice() -> None:
    granian_logger = logging.getLogger("_granian")
    if not any(isinstance(f, _DropEmbeddedNotice) for f in granian_logger.filters):
        granian_logger.addFilter(_DropEmbeddedNotice())


def serve_on_granian(
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
    setup_logging(log_level)
    options = granian_options(host, port, log_level)
    if not isinstance(app_ref_or_app, str):
        asyncio.run(serve_embedded(app_ref_or_app, options, graceful_timeout))
        return
    from granian.server.mp import MPServer

    if log_level is not None:
        os.environ[LOG_LEVEL_ENV] = log_level
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
