"""The command line: ``python -m framework serve|dev|run|register ...``.

``serve`` serves an app on granian (HTTP/2 cleartext and HTTP/1.1, limits raised for
Restate, graceful shutdown, optional worker processes); ``dev`` is the development loop: a
local restate-server plus the app, registered, restarted and re-registered when its source
files change, until Ctrl-C; ``run`` is ``dev`` without the reloading; ``register``
registers a deployment with a Restate server (e.g. from a one-shot container).

This module only reads the command line and hands it on: to ``framework._server.serve``,
``framework._dev.devloop`` and ``framework._dev.admin``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework._dev.admin import describe_services, register_deployment
from framework._dev.devloop import (
    DEFAULT_ADMIN_PORT,
    DEFAULT_INGRESS_PORT,
    DEFAULT_SERVICE_PORT,
    run_dev,
)
from framework._dev.replay import run_check
from framework._server.serve import GRACEFUL_TIMEOUT, LOG_LEVELS, serve
from framework.exceptions import AppLoadError, RestateServerError, ServeError

# -- arguments ------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def _bind(text: str) -> str:
    if text.startswith(("unix:", "fd://")):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:9080)")
    _port(port)
    return text


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1 or more)")
    return workers


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m framework", description="Serve, develop or register Restate services."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser(
        "serve",
        help="serve an app over HTTP/2 (h2c) for a Restate server to call",
        description="Serve an app on granian over HTTP/2 cleartext (and HTTP/1.1), with "
        "the connection limits a Restate server needs raised. SIGTERM or Ctrl-C stops it "
        "gracefully: no new requests, open invocations get the grace period to finish.",
    )
    serve_cmd.add_argument("app", metavar="MODULE:APP", help="e.g. services.app:app")
    serve_cmd.add_argument(
        "--bind",
        type=_bind,
        default=f"127.0.0.1:{DEFAULT_SERVICE_PORT}",
        metavar="HOST:PORT",
        help=f"where to listen (default 127.0.0.1:{DEFAULT_SERVICE_PORT}; 0.0.0.0:PORT for "
        "all interfaces, e.g. in a container)",
    )
    serve_cmd.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve from N processes sharing the socket (default 1)",
    )
    serve_cmd.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help=f"how long open invocations may run on after SIGTERM (default {GRACEFUL_TIMEOUT:g})",
    )
    serve_cmd.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        default=None,
        help="log records from this level up (default info)",
    )

    def add_dev_arguments(command: argparse.ArgumentParser) -> None:
        command.add_argument("app", metavar="MODULE:APP", help="e.g. services.app:app")
        command.add_argument(
            "--port",
            type=_port,
            default=None,
            metavar="N",
            help=f"port to serve the app on (default {DEFAULT_SERVICE_PORT}, or a free one)",
        )
        command.add_argument(
            "--ingress-port",
            type=_port,
            default=None,
            metavar="N",
            help=f"restate-server ingress port (default {DEFAULT_INGRESS_PORT}, or a free one)",
        )
        command.add_argument(
            "--admin-port",
            type=_port,
            default=None,
            metavar="N",
            help=f"restate-server admin port (default {DEFAULT_ADMIN_PORT}, or a free one)",
        )
        command.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            metavar="DIR",
            help="restate-server data and logs (default ./.restate; kept between runs)",
        )

    dev_cmd = commands.add_parser(
        "dev",
        help="like run, and restart + re-register the app when its source files change",
        description="Start a local restate-server, serve the app, register it and print a "
        "curl to try; when a source file of the app changes, restart the service and "
        "re-register it (force=true). Ctrl-C stops everything.",
    )
    add_dev_arguments(dev_cmd)
    dev_cmd.add_argument(
        "--no-reload", action="store_true", help="do not watch the source files (as run)"
    )
    run_cmd = commands.add_parser(
        "run",
        help="start a local restate-server, serve the app and register it",
        description="dev without reloading: a local restate-server plus the app, registered, "
        "until Ctrl-C.",
    )
    add_dev_arguments(run_cmd)

    register_cmd = commands.add_parser(
        "register",
        help="register a deployment with a Restate server (its admin API)",
        description="POST {admin}/deployments for URI: the server discovers the services "
        "served there. Exits 0 once registered, 1 if it could not be.",
    )
    register_cmd.add_argument("uri", metavar="URI", help="e.g. http://service:9080")
    register_cmd.add_argument(
        "--admin-url",
        default=f"http://127.0.0.1:{DEFAULT_ADMIN_PORT}",
        metavar="URL",
        help=f"the server's admin API (default http://127.0.0.1:{DEFAULT_ADMIN_PORT})",
    )
    register_cmd.add_argument(
        "--force",
        action="store_true",
        help="overwrite a deployment with the same URI (development only: it breaks "
        "invocations in flight on the old one)",
    )
    register_cmd.add_argument(
        "--http1.1",
        dest="use_http_11",
        action="store_true",
        help="the server calls it over HTTP/1.1 request/response instead of HTTP/2",
    )
    register_cmd.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep trying this long while the server or the service is not up yet",
    )
    replay_cmd = commands.add_parser(
        "replay",
        help="replay journals a Restate server recorded with the current code (no side effects)",
        description="Fetch the journals of invocations from the admin API (or from files "
        "written by --export) and replay each with the app's current handlers, without a "
        "server: no ctx.run closure runs, no call leaves the process. Prints ok, the first "
        "mismatch (journal index, what was recorded, what the code did, its source line) or "
        "that the code goes on past the recorded end (fine for invocations in flight). Exits 1 "
        "if any journal does not match, for CI.",
    )
    replay_cmd.add_argument("app", metavar="MODULE:APP", help="e.g. services.app:app")
    replay_cmd.add_argument(
        "--admin-url",
        default=f"http://127.0.0.1:{DEFAULT_ADMIN_PORT}",
        metavar="URL",
        help=f"the server's admin API (default http://127.0.0.1:{DEFAULT_ADMIN_PORT})",
    )
    replay_cmd.add_argument("--service", help="only invocations of this service")
    replay_cmd.add_argument("--handler", help="only invocations of this handler")
    replay_cmd.add_argument(
        "--status",
        choices=("running", "completed", "all"),
        default="all",
        help="in flight, completed, or both (default)",
    )
    replay_cmd.add_argument(
        "--since", metavar="DURATION", help="created in the last 30m, 1h, 2d..."
    )
    replay_cmd.add_argument("--limit", type=int, metavar="N", help="at most N, newest first")
    replay_cmd.add_argument(
        "--export", type=Path, metavar="DIR", help="also write the fetched journals to DIR"
    )
    replay_cmd.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        metavar="DIR",
        help="replay journals from files written by --export instead of asking a server",
    )
    return parser


# -- register -------------------------------------------------------------------------------


def _register(args: argparse.Namespace) -> int:
    try:
        answer = register_deployment(
            args.admin_url,
            args.uri,
            force=args.force,
            use_http_11=args.use_http_11,
            wait=args.wait,
        )
    except RestateServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"registered {args.uri} as {answer.get('id')}: {describe_services(answer)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m framework``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(
                args.app,
                args.bind,
                workers=args.workers,
                graceful_timeout=args.graceful_timeout,
                log_level=args.log_level,
            )
            return 0
        if args.command == "register":
            return _register(args)
        if args.command == "replay":
            return run_check(
                args.app,
                admin_url=args.admin_url,
                service=args.service,
                handler=args.handler,
                status=args.status,
                since=args.since,
                limit=args.limit,
                export_to=args.export,
                from_dir=args.from_dir,
            )
        return run_dev(
            args.app,
            reload=args.command == "dev" and not args.no_reload,
            port=args.port,
            ingress_port=args.ingress_port,
            admin_port=args.admin_port,
            data_dir=args.data_dir,
        )
    except (AppLoadError, RestateServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ServeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
