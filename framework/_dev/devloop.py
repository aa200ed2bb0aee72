"""The development loop of ``python -m framework dev`` (and ``run``, without reloading).

A local restate-server plus the app in a child process, registered, until Ctrl-C. With
reloading, the app's source files are watched (polled by stat: no platform notification
API, nothing to install): an edit restarts the service and registers it again
(``force=true``), so the server picks up changed handlers at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from framework._dev.admin import describe_services
from framework._dev.processes import free_port, port_is_free
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._dev.wait import WaitTimeout, wait_until
from framework._runtime.determinism import GUARD_ENV
from framework._server.common import MODULES_FILE_ENV, load_app
from framework.exceptions import RestateServerError

__all__ = [
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_INGRESS_PORT",
    "DEFAULT_SERVICE_PORT",
    "StatKey",
    "changed_paths",
    "loaded_source_files",
    "run_dev",
    "source_snapshot",
    "user_source_files",
    "watch_set",
]

DEFAULT_INGRESS_PORT = 8080
DEFAULT_ADMIN_PORT = 9070
DEFAULT_SERVICE_PORT = 9080
POLL_INTERVAL = 0.5  # seconds between two looks at the watched files
SETTLE_TIME = 0.2  # a change must hold still this long (editors write in several steps)
SETTLE_LIMIT = 3.0  # ...but a file written to all the time must not hold the reload back

# -- which files to watch, and whether they changed -----------------------------------------

StatKey = tuple[int, int, int]


def _installed_roots() -> list[Path]:
    """Where the standard library and installed packages live (not watched)."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(Exception):
        roots.add(site.getusersitepackages())
    return [Path(root).resolve() for root in roots if root]


def user_source_files(files: Iterable[str | Path]) -> list[Path]:
    """The ``.py`` files among ``files`` that are not part of Python or an installed package."""
    roots = _installed_roots()
    found: set[Path] = set()
    for name in files:
        path = Path(name).resolve()
        if path.suffix != ".py" or {"site-packages", "dist-packages"} & set(path.parts):
            continue
        if any(path.is_relative_to(root) for root in roots):
            continue
        found.add(path)
    return sorted(found)


def loaded_source_files() -> list[Path]:
    """The user source files (see ``user_source_files``) of the modules imported so far."""
    names = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    return user_source_files(name for name in names if isinstance(name, str))


def watch_set(files: Iterable[Path]) -> set[Path]:
    """``files`` plus every ``.py`` file beside them (so new modules count as changes too)."""
    result = set(files)
    for directory in {path.parent for path in result}:
        with contextlib.suppress(OSError):
            result.update(path.resolve() for path in directory.glob("*.py"))
    return result


def source_snapshot(paths: Iterable[Path]) -> dict[Path, StatKey | None]:
    """(mtime, size, inode) of each path, None for a missing one: compare two to see edits."""
    snapshot: dict[Path, StatKey | None] = {}
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            snapshot[path] = None
        else:
            snapshot[path] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return snapshot


def changed_paths(
    before: Mapping[Path, StatKey | None], after: Mapping[Path, StatKey | None]
) -> list[Path]:
    """The paths whose stat key differs between two snapshots (added, removed or edited)."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
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
        """Wait until the files hold still (at most ``SETTLE_LIMIT``); their stat then."""
        latest = current

        def held_still() -> bool:
            nonlocal latest
            later, previous = self.look(), latest
            latest = later
            return later == previous

        time.sleep(SETTLE_TIME)
        with contextlib.suppress(WaitTimeout):  # still changing: reload what is there now
            wait_until(
                held_still,
                "the edited files to hold still",
                timeout=SETTLE_LIMIT - SETTLE_TIME,
                interval=SETTLE_TIME,
            )
        return latest

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


# -- the loop -------------------------------------------------------------------------------


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
        f"{service.url} with force=true: {describe_services(answer)}"
    )
    return True


def run_dev(
    app_ref: str,
    *,
    reload: bool,
    port: int | None = None,
    ingress_port: int | None = None,
    admin_port: int | None = None,
    data_dir: Path | None = None,
) -> int:
    """Run restate-server and the app, registered, until Ctrl-C or SIGTERM; the exit code.

    Ports left out are the usual ones when free (8080, 9070, 9080), free ones otherwise; the
    server's data and both logs go to ``data_dir`` (default ``./.restate``, kept between
    runs). With ``reload``, an edit of the app's source restarts and re-registers it.
    """
    if reload:
        # The service re-imports edited files: no .pyc may outlive an edit made in the same
        # second with the same size (the parent imports the app too, to check it).
        sys.dont_write_bytecode = True
    app = load_app(app_ref)  # fail here, with a clear message, before starting anything
    tag = "[dev]" if reload else "[run]"
    data_dir = (data_dir or Path.cwd() / ".restate").resolve()
    server = RestateServer(
        base_dir=data_dir,
        ingress_port=ingress_port or _preferred(DEFAULT_INGRESS_PORT),
        admin_port=admin_port or _preferred(DEFAULT_ADMIN_PORT),
    )
    service_port = port or _preferred(DEFAULT_SERVICE_PORT) or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    service_log = data_dir / "service.log"
    service_log.write_bytes(b"")
    modules_file = data_dir / "service-modules.json"
    modules_file.unlink(missing_ok=True)
    env = {MODULES_FILE_ENV: str(modules_file), "PYTHONDONTWRITEBYTECODE": "1"} if reload else {}
    # Handler code reading the clock or randomness outside ctx.run is pointed out while
    # developing (FRAMEWORK_DETERMINISM_GUARD=off to silence it, fail to make it an error).
    env[GUARD_ENV] = os.environ.get(GUARD_ENV, "warn")
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
