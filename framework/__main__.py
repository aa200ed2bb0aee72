"""The command line: ``python -m framework serve|run MODULE:APP``.

``serve`` serves an app with hypercorn (HTTP/2 cleartext, limits raised for Restate);
``run`` is the development loop: a local restate-server plus the app, registered, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from framework._devserver import (
    RestateServer,
    RestateServerError,
    ServiceProcess,
    free_port,
    port_is_free,
)
from framework._serve import AppLoadError, load_app, serve

DEFAULT_INGRESS_PORT = 8080
DEFAULT_ADMIN_PORT = 9070
DEFAULT_SERVICE_PORT = 9080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m framework", description="Serve or run Restate services."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd = commands.add_parser(
        "serve", help="serve an app over HTTP/2 (h2c) for a Restate server to call"
    )
    serve_cmd.add_argument("app", metavar="MODULE:APP", help="e.g. services.app:app")
    serve_cmd.add_argument(
        "--bind", default=f"127.0.0.1:{DEFAULT_SERVICE_PORT}", metavar="HOST:PORT"
    )
    run_cmd = commands.add_parser(
        "run", help="start a local restate-server, serve the app and register it"
    )
    run_cmd.add_argument("app", metavar="MODULE:APP", help="e.g. services.app:app")
    run_cmd.add_argument(
        "--port",
        type=_port,
        default=None,
        metavar="N",
        help=f"port to serve the app on (default {DEFAULT_SERVICE_PORT}, or a free one)",
    )
    return parser


def _preferred(port: int) -> int | None:
    return port if port_is_free(port) else None


def _example_call(app: Any, ingress: str) -> str:
    """A curl line calling the app's first handler (a generic one if the app does not say)."""
    generic = (
        f"curl -X POST {ingress}/<Service>/<handler> -H 'content-type: application/json' "
        "-d '<json input>'"
    )
    services = getattr(app, "services", None)
    if not isinstance(services, dict) or not services:
        return generic
    service = next(iter(services.values()))
    handlers = getattr(service, "handlers", None)
    if not isinstance(handlers, dict) or not handlers:
        return generic
    handler = next(iter(handlers.values()))
    name = getattr(service, "name", None) or next(iter(services))
    handler_name = getattr(handler, "name", None) or next(iter(handlers))
    key = "/my-key" if getattr(service, "kind", "service") in ("object", "workflow") else ""
    line = f"curl -X POST {ingress}/{name}{key}/{handler_name}"
    if getattr(handler, "takes_input", True):
        line += " -H 'content-type: application/json' -d '\"Ann\"'"
    return line


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def _run(app_ref: str, port: int | None) -> int:
    app = load_app(app_ref)  # fail here, with a clear message, before starting anything
    # SIGTERM stops us like Ctrl-C does, so the children are always stopped below.
    signal.signal(signal.SIGTERM, _interrupt)
    state_dir = Path.cwd() / ".restate"
    server = RestateServer(
        base_dir=state_dir,
        ingress_port=_preferred(DEFAULT_INGRESS_PORT),
        admin_port=_preferred(DEFAULT_ADMIN_PORT),
    )
    service_port = port if port is not None else _preferred(DEFAULT_SERVICE_PORT) or free_port()
    service_log = state_dir / "service.log"
    service_log.parent.mkdir(parents=True, exist_ok=True)
    service_log.write_bytes(b"")
    service = ServiceProcess(app_ref, port=service_port, log_path=service_log, cwd=Path.cwd())
    try:
        print("starting restate-server (installing it on first use)...", flush=True)
        server.start()
        service.start()
        server.register(service.url)
        print(
            f"\n  ingress:  {server.ingress_url}\n"
            f"  admin:    {server.admin_url}   (UI: {server.admin_url}/ui)\n"
            f"  service:  {service.url}   ({app_ref})\n"
            f"  data:     {state_dir}   (server log: {server.log_path})\n\n"
            f"  try:  {_example_call(app, server.ingress_url)}\n\n"
            "Service output follows; Ctrl-C stops both.\n",
            flush=True,
        )
        offset = 0
        try:
            while True:
                offset = _echo_new_output(service_log, offset)
                if not service.running():
                    print(f"\nthe service exited; its log is {service_log}", file=sys.stderr)
                    return 1
                if not server.running():
                    print(f"\nrestate-server exited; its log is {server.log_path}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            _echo_new_output(service_log, offset)
            print("\nstopping...", flush=True)
            return 0
    finally:
        service.stop()
        server.stop()


def _echo_new_output(path: Path, offset: int) -> int:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return offset
    if chunk:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return offset + len(chunk)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m framework``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(args.app, args.bind)
            return 0
        return _run(args.app, args.port)
    except (AppLoadError, RestateServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
