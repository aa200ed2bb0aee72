"""Serving on hypercorn (``FRAMEWORK_SERVER=hypercorn``, ``pip install
'framework[hypercorn]'``), as the official SDK's users do: one process, or a supervisor of
worker processes sharing the bound sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_for_processes
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING, cast

from framework._endpoint.asgi import ASGIApp
from framework.exceptions import ServeError

if TYPE_CHECKING:  # hypercorn is optional: pip install 'framework[hypercorn]'
    from hypercorn.config import Config, Sockets
from framework._server.common import (
    GRACEFUL_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    die_with_parent,
    load_app,
    setup_logging,
)

_log = logging.getLogger("framework.serve")

H2_MAX_CONCURRENT_STREAMS = 10_000

# Request-body chunks hypercorn may queue per stream before it stops reading the connection;
# a stream whose handler is slow to read must not stall the others sharing the connection.
MAX_APP_QUEUE_SIZE = 256

# Extra time a supervisor gives its workers beyond their grace period before SIGTERM/SIGKILL.
_WORKER_STOP_MARGIN = 5.0


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


def serve_on_hypercorn(
    app_ref_or_app: str | ASGIApp,
    app: ASGIApp,
    bind: str | Sequence[str],
    workers: int,
    graceful_timeout: float,
    log_level: str | None,
) -> None:
    """Serve ``app`` on ``bind`` until SIGTERM/SIGINT: in this process, or from ``workers``
    processes importing ``app_ref_or_app`` (then a "module:attribute" reference)."""
    config = hypercorn_config(bind, workers=workers, graceful_timeout=graceful_timeout)
    setup_logging(log_level, config)
    sockets = _listen(config)
    try:
        if workers == 1:
            asyncio.run(_serve_sockets(app, config, sockets))
        else:
            assert isinstance(app_ref_or_app, str)
            _supervise(app_ref_or_app, config, sockets, log_level)
    finally:
        _close(sockets)


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


def _worker(
    app_ref: str, config: Config, sockets: Sockets, log_level: str | None, supervisor: int
) -> None:
    """One worker process: import the app and serve the shared sockets until SIGTERM (which
    the supervisor sends) or until the supervisor is gone."""
    die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group; the supervisor handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != supervisor:  # the supervisor died before the line above
        return
    app = load_app(app_ref)
    setup_logging(log_level, config)
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
