"""The command line: ``python -m framework serve|dev|run|register ...``.

``serve`` serves an app on granian (HTTP/2 cleartext and HTTP/1.1, limits raised for
Restate, graceful shutdown, optional worker processes); ``dev`` is the development loop: a
local restate-server plus the app, registered, restarted and re-registered when its source
files change, until Ctrl-C; ``run`` is ``dev`` without the reloading; ``register``
registers a deployment with a Restate server (e.g. from a one-shot container).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from framework._devserver import (
    RestateServer,
    RestateServerError,
    ServiceProcess,
    StatKey,
    changed_paths,
    free_port,
    loaded_source_files,
    port_is_free,
    register_deployment,
    source_snapshot,
    user_source_files,
    watch_set,
)
from framework._server.serve import (
    GRACEFUL_TIMEOUT,
    LOG_LEVELS,
    MODULES_FILE_ENV,
    AppLoadError,
    ServeError,
    load_app,
    serve,
)

DEFAULT_INGRESS_PORT = 8080
DEFAULT_ADMIN_PORT = 9070
DEFAULT_SERVICE_PORT = 9080
POLL_INTERVAL = 0.5  # seconds between two looks at the watched files
SETTLE_TIME = 0.2  # a change must hold still this long (editors write in several steps)


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
    return parser


# -- dev / run ------------------------------------------------------------------------------


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


class _Echo:
    """Copies what the service wrote to its log since the last call to our stdout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def __call__(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        if chunk:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        self.offset += len(chunk)


def _say(text: str) -> None:
    print(text, flush=True)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _revisions(answer: dict[str, Any]) -> str:
    services = answer.get("services")
    if not isinstance(services, list) or not services:
        return "no services"
    return ", ".join(
        f"{s.get('name')} (revision {s.get('revision')})" for s in services if isinstance(s, dict)
    )


class _Watcher:
    """The app's source files (as the running service reports them) and their last stat."""

    def __init__(self, modules_file: Path, files: list[Path]) -> None:
        self.modules_file = modules_file
        self.files = files
        self.baseline = source_snapshot(watch_set(files))

    def look(self) -> dict[Path, StatKey | None]:
        return source_snapshot(watch_set(self.files))

    def settled(self, current: dict[Path, StatKey | None]) -> dict[Path, StatKey | None]:
        """Wait until the files hold still (at most 3 s); their stat then."""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(SETTLE_TIME)
            later = self.look()
            if later == current:
                break
            current = later
        return current

    def reported_files(self) -> list[Path] | None:
        """The files the service (re)started from reported loading, if it did."""
        try:
            names = json.loads(self.modules_file.read_text())
        except (OSError, ValueError):
            return None
        return user_source_files(names) if isinstance(names, list) else None

    def rebase(self, before: dict[Path, StatKey | None]) -> None:
        """Watch what the service now reports; files seen in ``before`` keep that stat, so
        an edit made while the service restarted still counts as a change."""
        self.files = self.reported_files() or self.files
        paths = watch_set(self.files)
        now = source_snapshot(path for path in paths if path not in before)
        self.baseline = {path: before[path] if path in before else now[path] for path in paths}


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0].split("; its output ends with")[0]


def _restart(
    service: ServiceProcess, server: RestateServer, changed: list[Path], echo: _Echo
) -> bool:
    """Restart the service and re-register it; whether it runs again."""
    names = ", ".join(_shown(path) for path in changed[:3])
    if len(changed) > 3:
        names += f" and {len(changed) - 3} more"
    _say(f"\n[dev] {names} changed: restarting the service...")
    try:
        service.restart()
    except RestateServerError as error:
        echo()
        _say(
            f"[dev] the service did not start again: {_first_line(error)}\n"
            "[dev] fix the code and save; still watching"
        )
        return False
    echo()
    try:
        answer = server.register(service.url)
    except RestateServerError as error:
        _say(f"[dev] the service restarted (pid {service.pid}) but re-registering failed: {error}")
        return True
    _say(
        f"[dev] reloaded: service restarted (pid {service.pid}) and re-registered "
        f"{service.url} with force=true: {_revisions(answer)}"
    )
    return True


def _dev(args: argparse.Namespace, *, reload: bool) -> int:
    app_ref: str = args.app
    if reload:
        # The service re-imports edited files: no .pyc may outlive an edit made in the same
        # second with the same size (the parent imports the app too, to check it).
        sys.dont_write_bytecode = True
    app = load_app(app_ref)  # fail here, with a clear message, before starting anything
    tag = "[dev]" if reload else "[run]"
    data_dir: Path = (args.data_dir or Path.cwd() / ".restate").resolve()
    server = RestateServer(
        base_dir=data_dir,
        ingress_port=args.ingress_port or _preferred(DEFAULT_INGRESS_PORT),
        admin_port=args.admin_port or _preferred(DEFAULT_ADMIN_PORT),
    )
    service_port: int = args.port or _preferred(DEFAULT_SERVICE_PORT) or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    service_log = data_dir / "service.log"
    service_log.write_bytes(b"")
    modules_file = data_dir / "service-modules.json"
    modules_file.unlink(missing_ok=True)
    env = {MODULES_FILE_ENV: str(modules_file), "PYTHONDONTWRITEBYTECODE": "1"} if reload else {}
    service = ServiceProcess(
        app_ref, port=service_port, log_path=service_log, cwd=Path.cwd(), env=env
    )
    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C does
    }
    try:
        _say("starting restate-server (installing it on first use)...")
        server.start()
        service.start()
        server.register(service.url)
        watcher = _Watcher(modules_file, loaded_source_files()) if reload else None
        if watcher is not None:
            watcher.rebase(watcher.baseline)
        _say(
            f"\n  ingress:  {server.ingress_url}\n"
            f"  admin:    {server.admin_url}   (UI: {server.admin_url}/ui)\n"
            f"  service:  {service.url}   ({app_ref}, pid {service.pid})\n"
            f"  server:   pid {server.pid}, data in {data_dir} (log: {server.log_path})\n\n"
            f"  try:  {_example_call(app, server.ingress_url)}\n"
        )
        if watcher is not None:
            _say(
                f"[dev] watching {len(watcher.baseline)} files (every "
                f"{POLL_INTERVAL:g} s): a change restarts the service and re-registers it.\n"
                "Service output follows; Ctrl-C stops everything.\n"
            )
        else:
            _say("Service output follows; Ctrl-C stops both.\n")
        return _loop(server, service, _Echo(service_log), watcher, tag)
    finally:
        # A second Ctrl-C must not leave a child behind.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous.setdefault(sig, signal.signal(sig, signal.SIG_IGN))
        started = service.running() or server.running()
        service.stop()
        server.stop()
        if started:
            _say(f"{tag} stopped the service and restate-server")
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _loop(
    server: RestateServer,
    service: ServiceProcess,
    echo: _Echo,
    watcher: _Watcher | None,
    tag: str,
) -> int:
    service_up = True
    next_look = time.monotonic() + POLL_INTERVAL
    try:
        while True:
            echo()
            if not server.running():
                print(f"\nrestate-server exited; its log is {server.log_path}", file=sys.stderr)
                return 1
            if service_up and not service.running():
                echo()
                if watcher is None:
                    print(f"\nthe service exited; its log is {echo.path}", file=sys.stderr)
                    return 1
                _say("\n[dev] the service exited; waiting for a change to start it again")
                service_up = False
            if watcher is not None and time.monotonic() >= next_look:
                current = watcher.look()
                if changed_paths(watcher.baseline, current):
                    current = watcher.settled(current)
                    changed = changed_paths(watcher.baseline, current)
                    echo()
                    if changed:
                        service_up = _restart(service, server, changed, echo)
                        watcher.rebase(current)
                next_look = time.monotonic() + POLL_INTERVAL
            time.sleep(0.1)
    except KeyboardInterrupt:
        echo()
        _say(f"\n{tag} stopping...")
        return 0


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
    _say(f"registered {args.uri} as {answer.get('id')}: {_revisions(answer)}")
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
        return _dev(args, reload=args.command == "dev" and not args.no_reload)
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
