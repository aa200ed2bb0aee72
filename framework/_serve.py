"""Serve an ASGI app with hypercorn, configured for the Restate server's HTTP/2 connections.

The server keeps a few long-lived HTTP/2 (h2c) connections open and multiplexes every
invocation over them, so hypercorn's defaults (100 streams per connection, a 5 s keep-alive,
1000 requests per connection) are raised here.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from hypercorn.typing import Framework

from framework._logging import configure_default_logging

__all__ = ["ASGIApp", "AppLoadError", "hypercorn_config", "load_app", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

H2_MAX_CONCURRENT_STREAMS = 10_000
KEEP_ALIVE_TIMEOUT = 3600.0  # seconds; the server closes idle connections itself (5 min)
GRACEFUL_TIMEOUT = 3.0  # seconds given to open requests on shutdown
# Request-body chunks hypercorn may queue per stream before it stops reading the connection;
# a stream whose handler is slow to read must not stall the others sharing the connection.
MAX_APP_QUEUE_SIZE = 256


class AppLoadError(RuntimeError):
    """``MODULE:ATTRIBUTE`` does not name an importable ASGI app."""


def hypercorn_config(bind: str, *, workers: int = 1) -> Config:
    """A hypercorn ``Config`` bound to ``bind`` ("HOST:PORT") with the limits raised."""
    config = Config()
    config.bind = [bind]
    config.workers = workers
    config.h2_max_concurrent_streams = H2_MAX_CONCURRENT_STREAMS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    config.keep_alive_max_requests = sys.maxsize
    config.graceful_timeout = GRACEFUL_TIMEOUT
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


async def _serve(app: ASGIApp, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await hypercorn_serve(cast(Framework, app), config, shutdown_trigger=stop.wait)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def serve(app_ref_or_app: str | ASGIApp, bind: str = "127.0.0.1:9080") -> None:
    """Serve an app (or ``"module:attribute"``) on ``bind`` until SIGTERM or SIGINT.

    Unless the app configured logging, INFO records go to stderr tagged with the
    invocation id (see ``framework.getLogger``).
    """
    config = hypercorn_config(bind)
    if configure_default_logging():
        # hypercorn's lines then go through the same handler and format as everything else.
        config.errorlog = logging.getLogger("hypercorn.error")
    app = load_app(app_ref_or_app) if isinstance(app_ref_or_app, str) else app_ref_or_app
    asyncio.run(_serve(app, config))
