"""Run a local restate-server and service processes for development and tests.

``ensure_restate_server`` installs the server binary from npm once (cached per version);
``RestateServer`` runs it on loopback ports with its data in a (temporary) base dir and talks
to its admin API; ``ServiceProcess`` serves an ASGI app (``python -m framework serve``) in a
child process. Standard library only.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "RESTATE_SERVER_VERSION",
    "RestateServer",
    "RestateServerError",
    "ServiceProcess",
    "ensure_restate_server",
    "free_port",
    "live_processes",
    "port_is_free",
]

RESTATE_SERVER_VERSION = "1.7.12"

_NPM_PACKAGE = "@restatedev/restate-server"
_NPM_TIMEOUT = 900.0
_LOCK_TIMEOUT = 1200.0
_LOOPBACK = "127.0.0.1"
_LOOPBACK_NO_PROXY = ("127.0.0.1", "localhost", "::1")

# Talk to loopback directly, whatever HTTP(S)_PROXY says.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Fans out to every partition: it succeeds once all of them have a leader.
_READY_SQL = "SELECT count(*) AS n FROM sys_invocation"


def _get_ok(url: str) -> None:
    with _HTTP.open(url, timeout=2.0) as response:
        if response.status != 200:
            raise RestateServerError(f"HTTP {response.status}")


_ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _arrow_schema_field_names(message: bytes) -> list[str]:
    """The top-level field names in an Arrow IPC ``Message`` whose header is a ``Schema``.

    The message is a flatbuffer (Arrow's Message.fbs / Schema.fbs); only the few tables on the
    way to the names are walked: Message.header -> Schema.fields[i] -> Field.name.
    """

    def u16(pos: int) -> int:
        return int.from_bytes(message[pos : pos + 2], "little")

    def u32(pos: int) -> int:
        if pos + 4 > len(message):
            raise ValueError("truncated Arrow schema message")
        return int.from_bytes(message[pos : pos + 4], "little")

    def slot(table: int, index: int) -> int:
        """Where field ``index`` of the table at ``table`` is stored (ValueError if absent)."""
        vtable = table - int.from_bytes(message[table : table + 4], "little", signed=True)
        entry = 4 + 2 * index
        offset = u16(vtable + entry) if entry < u16(vtable) else 0
        if not offset:
            raise ValueError(f"field {index} missing from an Arrow schema table")
        return table + offset

    def deref(pos: int) -> int:
        return pos + u32(pos)

    message_table = deref(0)
    if message[slot(message_table, 1)] != 1:  # Message.header_type: 1 = Schema
        raise ValueError("the Arrow stream does not start with a schema")
    schema = deref(slot(message_table, 2))  # Message.header
    fields = deref(slot(schema, 1))  # Schema.fields
    names = []
    for i in range(u32(fields)):
        field = deref(fields + 4 + 4 * i)
        name = deref(slot(field, 0))  # Field.name
        names.append(message[name + 4 : name + 4 + u32(name)].decode())
    return names


class RestateServerError(RuntimeError):
    """The restate-server could not be installed, started or asked something."""


# -- installing the binary ------------------------------------------------------------------


def _cache_dir() -> Path:
    configured = os.environ.get("FRAMEWORK_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "framework"


def _platform_package() -> str:
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"restate-server-{system}-{arch}"


def _find_binary(prefix: Path) -> Path | None:
    scope = prefix / "node_modules" / "@restatedev"
    preferred = scope / _platform_package() / "bin" / "restate-server"
    if preferred.is_file():
        return preferred
    for candidate in sorted(scope.glob("restate-server-*/bin/restate-server")):
        if candidate.is_file():
            return candidate
    return None


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RestateServerError(
                        f"waited {timeout:.0f}s for the install lock {path}; another process "
                        "is still installing restate-server. If none is, delete the lock file "
                        "and try again."
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _npm_binary(
    tool: str, package: str, version: str, env_var: str, find: Callable[[Path], Path | None]
) -> Path:
    """The path of ``tool`` (a binary that npm ``package`` brings), installed on first use.

    ``$<env_var>`` wins when set. Otherwise it is installed into
    ``$FRAMEWORK_CACHE_DIR/<tool>-<version>`` (default ``~/.cache/framework``), once: concurrent
    callers wait on a file lock, and later calls find it in place.
    """
    configured = os.environ.get(env_var)
    if configured:
        binary = Path(configured).expanduser()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise RestateServerError(
                f"{env_var}={configured!r} is not an executable file; point it at a {tool} "
                "binary or unset it to install one with npm."
            )
        return binary

    cache = _cache_dir()
    prefix = cache / f"{tool}-{version}"
    found = find(prefix)
    if found is not None:
        return found

    with _file_lock(cache / f"{tool}-{version}.lock", _LOCK_TIMEOUT):
        found = find(prefix)  # another process may have installed it meanwhile
        if found is not None:
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise RestateServerError(
                f"npm was not found on PATH, so {tool} {version} cannot be installed. "
                f"Install Node.js (it brings npm), or set {env_var} to a {tool} binary."
            )
        # Install into a staging dir and rename it into place, so an interrupted install never
        # leaves a half-written binary where the fast path above would trust it.
        staging = cache / f".{tool}-{version}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        command = [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--prefix",
            str(staging),
            f"{package}@{version}",
        ]
        env = dict(os.environ, DO_NOT_TRACK="1", SCARF_ANALYTICS="false")
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=env,
                timeout=_NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestateServerError(
                f"`{' '.join(command)}` did not finish within {_NPM_TIMEOUT:.0f}s; check the npm "
                f"registry is reachable, or set {env_var} to a {tool} binary."
            ) from error
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestateServerError(
                f"`{' '.join(command)}` failed (exit code {result.returncode}); check the npm "
                f"registry is reachable, or set {env_var} to a {tool} binary.\n"
                f"npm stderr (tail):\n{_tail(result.stderr, 20)}"
            )
        if find(staging) is None:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestateServerError(
                f"npm installed {package}@{version} but no {tool} binary for this platform "
                f"({_platform_package()}) came with it; set {env_var} to a {tool} binary built "
                "for this machine."
            )
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)
        found = find(prefix)
        assert found is not None
        return found


def ensure_restate_server(version: str = RESTATE_SERVER_VERSION) -> Path:
    """The path of a restate-server binary, installing it with npm on first use.

    ``$RESTATE_SERVER_BIN`` wins when set. Otherwise the binary is installed into
    ``$FRAMEWORK_CACHE_DIR/restate-server-<version>`` (default ``~/.cache/framework``), once:
    concurrent callers wait on a file lock, and later calls find it in place.
    """
    return _npm_binary("restate-server", _NPM_PACKAGE, version, "RESTATE_SERVER_BIN", _find_binary)


# -- ports ----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
        return True


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- child processes ------------------------------------------------------------------------

# Children started and not yet reaped, so they can be stopped when this process exits.
_live: set[_Child] = set()


def live_processes() -> list[RestateServer | ServiceProcess]:
    """The servers and services started from this process that still run (for log dumps)."""
    return [child for child in list(_live) if isinstance(child, RestateServer | ServiceProcess)]


@atexit.register
def _stop_leftovers() -> None:
    for child in list(_live):
        with contextlib.suppress(Exception):
            child.stop()


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, have the child get SIGTERM when this process dies, even by SIGKILL.

    (Linux sends it when the *thread* that started the child ends: start children from a
    thread that lives as long as they should, e.g. the main thread.)
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def set_signal() -> None:  # runs in the child between fork and exec
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return set_signal


def _child_env() -> dict[str, str]:
    """This process's environment, minus our own settings, plus loopback in NO_PROXY."""
    env = dict(os.environ)
    env.pop("RESTATE_SERVER_BIN", None)
    for name in ("NO_PROXY", "no_proxy"):
        entries = [e for e in env.get(name, "").split(",") if e]
        entries += [host for host in _LOOPBACK_NO_PROXY if host not in entries]
        env[name] = ",".join(entries)
    return env


class _Child:
    """A child process with its output in a log file: what the runners below share."""

    _name = "process"

    def __init__(self, log_path: Path | None) -> None:
        self._log_path = log_path
        self._own_log = log_path is None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's PID (None before start and after stop or kill)."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the child's stdout and stderr go."""
        return self._log_path

    def log_text(self) -> str:
        """The child's output so far ("" when there is none)."""
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the child's output (read from its last 64 KiB)."""
        if self._log_path is None:
            return ""
        try:
            with self._log_path.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
                return _tail(handle.read().decode(errors="replace"), lines)
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def _spawn(self, command: list[str], env: dict[str, str], cwd: Path | None) -> None:
        if self.running():
            raise RestateServerError(f"{self._name} is already running (pid {self.pid})")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"{self._name}-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = self._log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the child
                preexec_fn=_parent_death_signal(),
            )
        except OSError as error:
            self._close_log()
            raise RestateServerError(f"could not run {command[0]}: {error}") from error
        _live.add(self)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> bool:
        process = self._process
        if process is None:
            return True
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        return True

    def _terminate(self, timeout: float) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; reaps the child."""
        if not self._signal_and_wait(signal.SIGTERM, timeout):
            self._signal_and_wait(signal.SIGKILL, 10.0)
        self._reaped()

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            # The whole process group (the child runs its own session): a served app's
            # worker processes die with it at once, as in a container kill, and free the port.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._signal_and_wait(signal.SIGKILL, 10.0)
        if process is not None:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                try:
                    os.killpg(process.pid, 0)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.01)
        self._reaped()

    def _reaped(self) -> None:
        self._process = None
        _live.discard(self)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def _exit_code(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL the child (a crash) and reap it; its data stays, ``start`` runs it again."""
        self._kill()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call more than once."""
        self._terminate(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the restate server ---------------------------------------------------------------------


class RestateServer(_Child):
    """A single-node restate-server on loopback ports, for development and tests.

    Ports are picked when first started (or given) and kept by ``restart``; the data lives in
    ``base_dir``, or in a temporary dir that ``stop`` removes. Extra settings go in ``env``
    (``RESTATE_...`` variables); the process environment is inherited too. ``start`` returns
    once ``/health`` answers and every partition has a leader (SQL on ``sys_invocation``
    works); the log goes to ``log_path``, else next to the data.
    """

    _name = "restate-server"

    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        enable_protocol_v7: bool = False,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        ingress_port: int | None = None,
        admin_port: int | None = None,
        node_port: int | None = None,
        version: str = RESTATE_SERVER_VERSION,
    ) -> None:
        super().__init__(log_path)
        self._base_dir = Path(base_dir).resolve() if base_dir is not None else None
        self._temp_root: Path | None = None
        self.enable_protocol_v7 = enable_protocol_v7
        self._extra_env = dict(env or {})
        self.ingress_port = ingress_port
        self.admin_port = admin_port
        self.node_port = node_port
        self._version = version

    # -- addresses ---------------------------------------------------------------------------

    @property
    def ingress_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the ingress (where services are called)."""
        return f"http://{_LOOPBACK}:{self._port('ingress', self.ingress_port)}"

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the admin API (registration, SQL, health)."""
        return f"http://{_LOOPBACK}:{self._port('admin', self.admin_port)}"

    @property
    def base_dir(self) -> Path | None:
        """The server's data directory (None before the first start without a base dir)."""
        return self._base_dir

    def _port(self, what: str, port: int | None) -> int:
        if port is None:
            raise RestateServerError(f"the {what} port is picked on start(); start the server")
        return port

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until its admin API and ingress are healthy."""
        if self.running():
            raise RestateServerError(f"restate-server is already running (pid {self.pid})")
        binary = ensure_restate_server(self._version)
        created_temp = self._base_dir is None
        if self._base_dir is None:
            self._temp_root = Path(tempfile.mkdtemp(prefix="restate-server-"))
            self._base_dir = self._temp_root / "data"
            if self._log_path is None:
                self._log_path = self._temp_root / "restate-server.log"
                self._own_log = False  # removed with the temp root
        elif self._log_path is None:
            self._log_path = self._base_dir / "restate-server.log"
            self._own_log = False
        self._base_dir.mkdir(parents=True, exist_ok=True)
        if self.ingress_port is None:
            self.ingress_port = free_port()
        if self.admin_port is None:
            self.admin_port = free_port()
        if self.node_port is None:
            self.node_port = free_port()
        for what, port in (
            ("ingress", self.ingress_port),
            ("admin", self.admin_port),
            ("node", self.node_port),
        ):
            if not port_is_free(port):
                raise RestateServerError(
                    f"the {what} port {port} on {_LOOPBACK} is already in use; stop what listens "
                    "there or let RestateServer pick a free port"
                )

        env = _child_env()
        env.update(
            {
                "RESTATE_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1",
                "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
                # TCP only: no unix sockets under base_dir (their paths have a length limit).
                "RESTATE_LISTEN_MODE": "tcp",
            }
        )
        env.update(self._extra_env)
        node = f"{_LOOPBACK}:{self.node_port}"
        admin = f"{_LOOPBACK}:{self.admin_port}"
        ingress = f"{_LOOPBACK}:{self.ingress_port}"
        env.update(
            {
                "RESTATE_BIND_ADDRESS": node,
                "RESTATE_ADVERTISED_ADDRESS": f"http://{node}/",
                "RESTATE_ADMIN__BIND_ADDRESS": admin,
                "RESTATE_ADMIN__ADVERTISED_ADMIN_ENDPOINT": f"http://{admin}/",
                "RESTATE_INGRESS__BIND_ADDRESS": ingress,
                "RESTATE_INGRESS__ADVERTISED_INGRESS_ENDPOINT": f"http://{ingress}/",
            }
        )
        if self.enable_protocol_v7:
            env["RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7"] = "true"
        command = [str(binary), "--no-logo", "--base-dir", str(self._base_dir)]
        self._spawn(command, env, cwd=self._base_dir)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self._kill()
            if created_temp:
                self._remove_temp_root()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        """Wait for admin and ingress health, then for every partition to be queryable.

        ``/health`` answers 200 before the partitions have leaders (about half a second
        earlier on a single node); until then SQL on ``sys_*`` tables fails with "node lookup
        for partition N failed" or "expecting a partition store".
        """
        deadline = time.monotonic() + timeout
        admin_health = f"{self.admin_url}/health"
        ingress_health = f"{self.ingress_url}/restate/health"
        checks: list[tuple[str, Callable[[], object]]] = [
            (f"GET {admin_health}", functools.partial(_get_ok, admin_health)),
            (f"GET {ingress_health}", functools.partial(_get_ok, ingress_health)),
            ("a query on sys_invocation", functools.partial(self.query, _READY_SQL, timeout=5.0)),
        ]
        for what, check in checks:
            while True:
                code = self._exit_code()
                if code is not None:
                    raise RestateServerError(
                        f"restate-server exited with code {code} while starting; its log "
                        f"({self._log_path}) ends with:\n{self.log_tail()}"
                    )
                try:
                    check()
                    break
                except (RestateServerError, urllib.error.URLError, OSError) as error:
                    last = str(error).splitlines()[0]
                if time.monotonic() > deadline:
                    raise RestateServerError(
                        f"restate-server was not ready within {timeout:.0f}s: {what} kept "
                        f"failing ({last}); its log ({self._log_path}) ends with:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); removes a temp base dir.

        Safe to call more than once.
        """
        self._terminate(timeout)
        self._remove_temp_root()

    def _remove_temp_root(self) -> None:
        if self._temp_root is not None:
            shutil.rmtree(self._temp_root, ignore_errors=True)
            self._temp_root = None
            self._base_dir = None
            self._log_path = None

    def restart(self, timeout: float = 60.0) -> None:
        """Stop and start again with the same base dir and ports."""
        self._terminate(10.0)
        self.start(timeout)

    # -- admin API ---------------------------------------------------------------------------

    def _admin(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 30.0,
        retry_connect: float = 0.0,
    ) -> Any:
        url = f"{self.admin_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        deadline = time.monotonic() + retry_connect
        while True:
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with _HTTP.open(request, timeout=timeout) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")
                with contextlib.suppress(ValueError):
                    detail = json.loads(detail).get("message", detail)
                raise RestateServerError(
                    f"{method} {url} failed with HTTP {error.code}: {detail}"
                ) from None
            except TimeoutError as error:
                raise RestateServerError(
                    f"{method} {url} got no answer within {timeout:.0f}s; the server may be "
                    "overloaded or stuck. Its log ends with:\n" + self.log_tail(15)
                ) from error
            except (urllib.error.URLError, ConnectionError) as error:
                if time.monotonic() >= deadline:
                    raise RestateServerError(
                        f"{method} {url} failed: {getattr(error, 'reason', error)}; is the "
                        "server running? Its log ends with:\n" + self.log_tail(15)
                    ) from error
                time.sleep(0.2)
        return json.loads(raw) if raw else None

    def register(
        self,
        uri: str,
        *,
        force: bool = True,
        use_http_11: bool = False,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Register the deployment at ``uri`` (the server runs discovery); returns its answer."""
        body: dict[str, Any] = {"uri": uri, "force": force}
        if use_http_11:
            body["use_http_11"] = True
        result: dict[str, Any] = self._admin(
            "POST", "/deployments", body, timeout=timeout, retry_connect=min(timeout, 5.0)
        )
        return result

    def query(self, sql: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Run SQL on the admin query endpoint (``sys_invocation``, ``sys_journal``...).

        Each row has every selected column, in order, with None for SQL NULL. (The server's
        JSON leaves NULL columns out, so the column names are read from the head of its Arrow
        answer to the same query.)
        """
        result = self._admin("POST", "/query", {"query": sql}, timeout=timeout)
        rows: list[dict[str, Any]] = result["rows"]
        if not rows:
            return rows
        columns = self._query_columns(sql, timeout)
        if columns is None:
            return rows
        return [{name: row.get(name) for name in columns} for row in rows]

    def _query_columns(self, sql: str, timeout: float) -> list[str] | None:
        """The result column names of ``sql``, from the schema message the Arrow stream opens with.

        None when they cannot be read (then rows are returned as the server's JSON has them).
        """
        request = urllib.request.Request(
            f"{self.admin_url}/query",
            data=json.dumps({"query": sql}).encode(),
            method="POST",
            headers={"content-type": "application/json", "accept": _ARROW_STREAM},
        )
        try:
            with _HTTP.open(request, timeout=timeout) as response:
                head = response.read(8)
                if len(head) < 8:
                    return None
                if head[:4] == b"\xff\xff\xff\xff":  # continuation marker (Arrow >= 0.15)
                    length = int.from_bytes(head[4:8], "little")
                    message = response.read(length)
                else:
                    length = int.from_bytes(head[:4], "little")
                    message = head[4:] + response.read(max(length - 4, 0))
            return _arrow_schema_field_names(message)
        except (urllib.error.URLError, OSError, ValueError, IndexError):
            return None

    def version(self) -> dict[str, Any]:
        """``GET /version``: the server version and ``features`` (e.g. ``protocol_v7``)."""
        result: dict[str, Any] = self._admin("GET", "/version", timeout=10.0)
        return result

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running() else "stopped"
        return (
            f"<RestateServer {state} ingress={self.ingress_port} admin={self.admin_port} "
            f"v7={self.enable_protocol_v7}>"
        )


# -- a service in a child process -----------------------------------------------------------


class ServiceProcess(_Child):
    """``python -m framework serve APP_REF`` on 127.0.0.1:``port`` in a child process."""

    _name = "service"

    def __init__(
        self,
        app_ref: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__(log_path)
        self.app_ref = app_ref
        self.port = port if port is not None else free_port()
        self._extra_env = dict(env or {})
        self.cwd = cwd

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: what to register with the server."""
        return f"http://{_LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        """The command line that serves the app."""
        return [
            sys.executable,
            "-m",
            "framework",
            "serve",
            self.app_ref,
            "--bind",
            f"{_LOOPBACK}:{self.port}",
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start serving and wait until the port accepts connections."""
        if self.running():
            raise RestateServerError(f"{self.app_ref} is already being served (pid {self.pid})")
        if not port_is_free(self.port):
            raise RestateServerError(
                f"port {self.port} on {_LOOPBACK} is already in use; stop what listens there "
                "or let ServiceProcess pick a free port"
            )
        env = _child_env()
        env["PYTHONUNBUFFERED"] = "1"
        # The framework package must be importable from the child wherever it runs.
        package_root = str(Path(__file__).resolve().parents[1])
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if package_root not in paths:
            paths.append(package_root)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(self._extra_env)
        self._spawn(self.command(), env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while not _accepts_connections(self.port):
            code = self._exit_code()
            if code is not None:
                log = self.log_tail()
                self._reaped()
                raise RestateServerError(
                    f"serving {self.app_ref} exited with code {code} before listening on "
                    f"port {self.port}; its output ends with:\n{log}"
                )
            if time.monotonic() > deadline:
                log = self.log_tail()
                self._kill()
                raise RestateServerError(
                    f"serving {self.app_ref} did not listen on port {self.port} within "
                    f"{timeout:.0f}s; its output ends with:\n{log}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call more than once."""
        self._terminate(timeout)
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (if running) and serve again on the same port."""
        self._terminate(10.0)
        self.start(timeout)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running() else "stopped"
        return f"<ServiceProcess {self.app_ref} {state} port={self.port}>"


# -- registering a deployment with any Restate server ---------------------------------------


def _loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in _LOOPBACK_NO_PROXY


def register_deployment(
    admin_url: str,
    uri: str,
    *,
    force: bool = False,
    use_http_11: bool = False,
    wait: float = 0.0,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """``POST {admin_url}/deployments`` for the deployment at ``uri``; the server's answer.

    With ``wait`` > 0, keeps trying for that many seconds while the admin API cannot be
    reached or answers 5xx (e.g. its discovery request to a service still starting failed);
    a 4xx answer (a conflicting registration without ``force``...) fails at once. Raises
    ``RestateServerError`` with the server's message.
    """
    body: dict[str, Any] = {"uri": uri, "force": force}
    if use_http_11:
        body["use_http_11"] = True
    url = f"{admin_url.rstrip('/')}/deployments"
    opener = _HTTP if _loopback_url(url) else urllib.request.build_opener()
    deadline = time.monotonic() + wait
    while True:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                raw = response.read()
            answer: dict[str, Any] = json.loads(raw) if raw else {}
            return answer
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            problem = f"POST {url} failed with HTTP {error.code}: {detail}"
            retry = error.code >= 500
        except (urllib.error.URLError, OSError) as error:
            problem = f"POST {url} failed: {getattr(error, 'reason', error)}"
            retry = True
        if not retry or time.monotonic() >= deadline:
            raise RestateServerError(problem)
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


# -- watching source files (``python -m framework dev``) ------------------------------------

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


# -- a cluster of restate-server nodes on one machine ---------------------------------------

# What makes the nodes one replicated cluster (TOML keys of restate-server 1.7's config file):
# metadata replicated over every node's metadata server, the log on the replicated loglet with
# two copies of every record (and partitions with a leader and one follower), few partitions
# and little RocksDB memory, so that three nodes and a service fit on a small machine.
CLUSTER_SETTINGS: dict[str, Any] = {
    "default-num-partitions": 4,
    "default-replication": 2,
    "rocksdb-total-memory-size": "128 MiB",
    "bifrost": {"default-provider": "replicated"},
    "metadata-client": {"type": "replicated"},
}

RESTATECTL_VERSION = RESTATE_SERVER_VERSION
_RESTATECTL_PACKAGE = "@restatedev/restatectl"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a TOML value")


def _toml_dumps(config: Mapping[str, Any], prefix: str = "") -> str:
    """A TOML document of ``config``: scalars and lists, nested mappings as tables."""
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in config.items()
        if not isinstance(value, Mapping)
    ]
    for key, value in config.items():
        if isinstance(value, Mapping):
            table = f"{prefix}{key}"
            lines += ["", f"[{table}]", _toml_dumps(value, f"{table}.").strip("\n")]
    return "\n".join(lines) + "\n"


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = _merged(current, value)
        else:
            result[key] = value
    return result


def write_cluster_configs(
    root: Path,
    nodes: int = 3,
    *,
    cluster_name: str = "framework-cluster",
    settings: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write one restate-server config file per node of a cluster on 127.0.0.1; their paths.

    Node ``i`` (from 1) gets ``root/node-i/restate.toml`` with its data in ``root/node-i/data``,
    the node name ``node-i``, free ports for its fabric (node-to-node), admin and ingress
    addresses, and every node's fabric address as the metadata servers to reach. Only node 1
    provisions the cluster (``auto-provision``). ``settings`` (default ``CLUSTER_SETTINGS``) are
    merged in last; a key of a table (``{"bifrost": {...}}``) is merged into that table.
    """
    if nodes < 1:
        raise ValueError(f"a cluster needs at least one node, not {nodes}")
    root = Path(root).resolve()
    ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
    fabric = [f"http://{_LOOPBACK}:{node}/" for node, _, _ in ports]
    paths = []
    for index, (node_port, admin_port, ingress_port) in enumerate(ports, start=1):
        directory = root / f"node-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "node-name": f"node-{index}",
            "cluster-name": cluster_name,
            "base-dir": str(directory / "data"),
            "auto-provision": index == 1,
            "listen-mode": "tcp",  # no unix sockets under base-dir (their paths are limited)
            "disable-telemetry": True,
            "log-disable-ansi-codes": True,
            "bind-address": f"{_LOOPBACK}:{node_port}",
            "advertised-address": fabric[index - 1],
            "admin": {
                "bind-address": f"{_LOOPBACK}:{admin_port}",
                "advertised-address": f"http://{_LOOPBACK}:{admin_port}/",
            },
            "ingress": {
                "bind-address": f"{_LOOPBACK}:{ingress_port}",
                "advertised-address": f"http://{_LOOPBACK}:{ingress_port}/",
            },
            "metadata-client": {"type": "replicated", "addresses": fabric},
        }
        config = _merged(config, CLUSTER_SETTINGS if settings is None else settings)
        path = directory / "restate.toml"
        path.write_text(_toml_dumps(config))
        paths.append(path)
    return paths


def _address_port(address: str, what: str, config_file: Path) -> int:
    port = urllib.parse.urlsplit(address if "//" in address else f"//{address}").port
    if port is None:
        raise RestateServerError(f"{config_file}: {what} {address!r} has no port")
    return port


class RestateClusterNode(_Child):
    """One restate-server node started from a TOML config file (``--config-file``).

    The config says everything: node name, cluster, base dir, the fabric, admin and ingress
    addresses (``write_cluster_configs`` writes a cluster's worth). ``start`` only launches the
    process, since a node that joins a cluster is not healthy before the others are up: start
    every node, then ``wait_healthy`` on each and ``wait_for_partition_leaders``. The log goes
    to ``log_path``, else to ``restate-server.log`` beside the config file.
    """

    _name = "restate-node"

    def __init__(
        self,
        config_file: Path,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        version: str = RESTATE_SERVER_VERSION,
    ) -> None:
        import tomllib

        self.config_file = Path(config_file).resolve()
        with self.config_file.open("rb") as handle:
            self.config: dict[str, Any] = tomllib.load(handle)
        super().__init__(log_path or self.config_file.parent / "restate-server.log")
        self._own_log = False
        self._extra_env = dict(env or {})
        self._version = version
        self.name: str = self.config.get("node-name", self.config_file.parent.name)
        base_dir = self.config.get("base-dir")
        self.base_dir = Path(base_dir) if base_dir else self.config_file.parent / "data"

        def port(section: Mapping[str, Any], default: int, what: str) -> int:
            address = section.get("bind-address")
            return default if address is None else _address_port(address, what, self.config_file)

        self.node_port = port(self.config, 5122, "bind-address")
        self.admin_port = port(self.config.get("admin", {}), 9070, "[admin] bind-address")
        self.ingress_port = port(self.config.get("ingress", {}), 8080, "[ingress] bind-address")

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT`` of this node's admin API."""
        return f"http://{_LOOPBACK}:{self.admin_port}"

    @property
    def ingress_url(self) -> str:
        """``http://127.0.0.1:PORT`` of this node's ingress."""
        return f"http://{_LOOPBACK}:{self.ingress_port}"

    @property
    def fabric_url(self) -> str:
        """The node-to-node address other nodes (and ``restatectl``) reach this node at."""
        advertised = self.config.get("advertised-address")
        return str(advertised or f"http://{_LOOPBACK}:{self.node_port}/")

    def start(self, timeout: float = 0.0) -> None:
        """Launch the node; with ``timeout`` > 0, also ``wait_healthy(timeout)``."""
        if self.running():
            raise RestateServerError(f"{self.name} is already running (pid {self.pid})")
        binary = ensure_restate_server(self._version)
        for what, number in (
            ("node", self.node_port),
            ("admin", self.admin_port),
            ("ingress", self.ingress_port),
        ):
            if not port_is_free(number):
                raise RestateServerError(
                    f"{self.name}: the {what} port {number} is already in use ({self.config_file})"
                )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        env = _child_env()
        env.update({"RESTATE_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"})
        env.update(self._extra_env)
        command = [str(binary), "--no-logo", "--config-file", str(self.config_file)]
        self._spawn(command, env, cwd=self.base_dir)
        if timeout > 0:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until the admin API and the ingress answer their health checks."""
        deadline = time.monotonic() + timeout
        for url in (f"{self.admin_url}/health", f"{self.ingress_url}/restate/health"):
            while True:
                code = self._exit_code()
                if code is not None:
                    raise RestateServerError(
                        f"{self.name} exited with code {code}; its log ({self._log_path}) ends "
                        f"with:\n{self.log_tail()}"
                    )
                try:
                    _get_ok(url)
                    break
                except (RestateServerError, urllib.error.URLError, OSError) as error:
                    last = str(error).splitlines()[0] if str(error) else repr(error)
                if time.monotonic() > deadline:
                    raise RestateServerError(
                        f"{self.name} was not healthy within {timeout:.0f}s: GET {url} kept "
                        f"failing ({last}); its log ({self._log_path}) ends with:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.1)

    def __enter__(self) -> Self:
        self.start(60.0)  # healthy too, not only launched
        return self

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running() else "stopped"
        return (
            f"<RestateClusterNode {self.name} {state} fabric={self.node_port} "
            f"admin={self.admin_port} ingress={self.ingress_port}>"
        )


def _find_restatectl(prefix: Path) -> Path | None:
    scope = prefix / "node_modules" / "@restatedev"
    preferred = scope / _platform_package().replace("restate-server", "restatectl") / "bin"
    if (preferred / "restatectl").is_file():
        return preferred / "restatectl"
    for candidate in sorted(scope.glob("restatectl-*/bin/restatectl")):
        if candidate.is_file():
            return candidate
    return None


def ensure_restatectl(version: str = RESTATECTL_VERSION) -> Path:
    """The path of a ``restatectl`` binary (the cluster admin tool), installed with npm once.

    ``$RESTATECTL_BIN`` wins when set; otherwise ``@restatedev/restatectl`` is installed into
    ``$FRAMEWORK_CACHE_DIR/restatectl-<version>`` (default ``~/.cache/framework``), as
    ``ensure_restate_server`` does for the server.
    """
    return _npm_binary(
        "restatectl", _RESTATECTL_PACKAGE, version, "RESTATECTL_BIN", _find_restatectl
    )


_LEADERS_SQL = (
    "SELECT p.partition_id AS partition_id, n.name AS node FROM partition_state p "
    "JOIN nodes n ON p.plain_node_id = n.plain_node_id "
    "WHERE p.effective_mode = 'Leader' AND n.state = 'alive'"
)


def partition_leaders(nodes: Iterable[RestateClusterNode], timeout: float = 10.0) -> dict[int, str]:
    """Which node leads each partition now, asked of the given (running) nodes by restatectl.

    ``{partition id: node name}``; a partition without a leader is missing. Raises
    ``RestateServerError`` when restatectl fails (e.g. none of the nodes answers).
    """
    addresses = ",".join(node.fabric_url for node in nodes if node.running())
    if not addresses:
        raise RestateServerError("no running node to ask for the partition leaders")
    command = [str(ensure_restatectl()), "--address", addresses, "sql", "--json", _LEADERS_SQL]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=_child_env(), timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise RestateServerError(f"restatectl got no answer within {timeout:.0f}s") from error
    if result.returncode != 0:
        raise RestateServerError(f"restatectl sql failed: {_tail(result.stderr, 5)}")
    rows = json.loads(result.stdout or "[]")
    return {int(row["partition_id"]): str(row["node"]) for row in rows}


def wait_for_partition_leaders(
    nodes: Iterable[RestateClusterNode],
    partitions: int,
    *,
    timeout: float = 60.0,
    exclude: Iterable[str] = (),
) -> dict[int, str]:
    """Wait until each of ``partitions`` partitions has a leader, none of them a node named in
    ``exclude`` (e.g. one just killed); returns ``{partition id: leader node name}``."""
    running = list(nodes)
    excluded = set(exclude)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            leaders = partition_leaders(running, timeout=max(1.0, min(10.0, timeout)))
        except RestateServerError as error:
            last = str(error).splitlines()[0]
        else:
            good = {p: node for p, node in leaders.items() if node not in excluded}
            if len(good) >= partitions:
                return good
            missing = sorted(set(range(partitions)) - set(good))
            last = f"partitions {missing} have no leader (leaders: {leaders})"
        if time.monotonic() > deadline:
            raise RestateServerError(
                f"the cluster did not have a leader for each of its {partitions} partitions "
                f"within {timeout:.0f}s: {last}"
            )
        time.sleep(0.2)
