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

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from framework._endpoint.asgi import ASGIApp

if TYPE_CHECKING:  # hypercorn is optional: pip install 'framework[hypercorn]'
    pass
from framework._server.common import (
    GRACEFUL_TIMEOUT,
    LOG_LEVELS,
    load_app,
    log_level_number,
    report_loaded_modules,
)
from framework._server.granian import serve_on_granian
from framework._server.hypercorn import serve_on_hypercorn

# Which HTTP server runs the app: granian (the default), or hypercorn (as the official SDK's
# users serve it; the benchmarks compare both on it).
SERVER = os.environ.get("FRAMEWORK_SERVER", "granian").lower()

_log = logging.getLogger("framework.serve")


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
    log_level_number(log_level)  # an unknown level fails before anything starts
    if isinstance(app_ref_or_app, str):
        app = load_app(app_ref_or_app)  # in every case: fail here, before binding
        report_loaded_modules()
    elif workers > 1:
        raise ValueError("workers > 1 needs the app as a 'module:attribute' reference")
    else:
        app = app_ref_or_app
    if SERVER != "hypercorn":
        serve_on_granian(app_ref_or_app, bind, workers, graceful_timeout, log_level)
        return
    serve_on_hypercorn(app_ref_or_app, app, bind, workers, graceful_timeout, log_level)


__all__ = ["GRACEFUL_TIMEOUT", "LOG_LEVELS", "SERVER", "serve"]
