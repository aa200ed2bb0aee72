"""``RestateServer``: one restate-server node on loopback ports, for development and tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from framework._dev.admin import AdminClient, get_ok
from framework._dev.install import RESTATE_SERVER_VERSION, ensure_restate_server
from framework._dev.processes import LOOPBACK, ChildProcess, child_env, free_port, port_is_free
from framework._dev.wait import WaitTimeout
from framework.exceptions import RestateServerError

__all__ = ["RestateServer"]

# Fans out to every partition: it succeeds once all of them have a leader.
_READY_SQL = "SELECT count(*) AS n FROM sys_invocation"


class _NotReady(Exception):
    """One readiness check failed this time."""


# Starts on fresh ports after losing a race for the ports it picked (see start()).
_PORT_RACE_ATTEMPTS = 3


class RestateServer(ChildProcess):
    """A single-node restate-server on loopback ports, for development and tests.

    Ports are picked when first started (or given) and kept by ``restart``; the data lives in
    ``base_dir``, or in a temporary dir that ``stop`` removes. Extra settings go in ``env``
    (``RESTATE_...`` variables); the process environment is inherited too. ``start`` returns
    once ``/health`` answers and every partition has a leader (SQL on ``sys_invocation``
    works); the log goes to ``log_path``, else next to the data.
    """

    kind = "restate-server"

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
        return f"http://{LOOPBACK}:{self._port('ingress', self.ingress_port)}"

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the admin API (registration, SQL, health)."""
        return f"http://{LOOPBACK}:{self._port('admin', self.admin_port)}"

    @property
    def admin(self) -> AdminClient:
        """A client of this server's admin API (its errors quote the server's log)."""
        return AdminClient(self.admin_url, log_tail=lambda: self.log_tail(15))

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
        """Start the server and wait until its admin API and ingress are healthy.

        Ports it picked itself can be taken by another process between being found free and
        being bound (test sessions start many servers and services): it then starts again
        on fresh ports, a few times, in a fresh temp dir.
        """
        picked = [
            name
            for name, port in (
                ("ingress_port", self.ingress_port),
                ("admin_port", self.admin_port),
                ("node_port", self.node_port),
            )
            if port is None
        ]
        attempts = _PORT_RACE_ATTEMPTS if picked and self._base_dir is None else 1
        log_path = self._log_path
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
                return
            except RestateServerError as error:
                if attempt == attempts or "Address in use" not in str(error):
                    raise
                for name in picked:
                    setattr(self, name, None)
                self._base_dir = None  # the temp dir went with the failed attempt
                self._log_path = log_path

    def _start_once(self, timeout: float) -> None:
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
                    f"the {what} port {port} on {LOOPBACK} is already in use; stop what listens "
                    "there or let RestateServer pick a free port"
                )

        env = child_env()
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
        node = f"{LOOPBACK}:{self.node_port}"
        admin = f"{LOOPBACK}:{self.admin_port}"
        ingress = f"{LOOPBACK}:{self.ingress_port}"
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
        admin_health = f"{self.admin_url}/health"
        ingress_health = f"{self.ingress_url}/restate/health"
        pending: list[tuple[str, Callable[[], object]]] = [
            (f"GET {admin_health}", lambda: get_ok(admin_health)),
            (f"GET {ingress_health}", lambda: get_ok(ingress_health)),
            (
                "a query on sys_invocation",
                lambda: self.admin.request("POST", "/query", {"query": _READY_SQL}, timeout=5.0),
            ),
        ]

        def ready() -> bool:
            while pending:  # in order; each one passed is not asked again
                what, check = pending[0]
                try:
                    check()
                except (RestateServerError, OSError) as error:
                    raise _NotReady(f"{what}: {error}") from error
                pending.pop(0)
            return True

        try:
            code = self._wait_while_running(
                ready,
                "its admin API, its ingress and its partitions",
                timeout=timeout,
                retry_on=(_NotReady,),
            )
        except WaitTimeout as error:
            raise RestateServerError(
                f"restate-server was not ready: {error}; its log ({self._log_path}) ends "
                f"with:\n{self.log_tail()}"
            ) from None
        if code is not None:
            raise RestateServerError(
                f"restate-server exited with code {code} while starting; its log "
                f"({self._log_path}) ends with:\n{self.log_tail()}"
            )

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

    def register(
        self,
        uri: str,
        *,
        force: bool = True,
        use_http_11: bool = False,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Register the deployment at ``uri`` (the server runs discovery); returns its answer.

        A failed discovery (5xx) fails at once, with the server's reason; only a server not
        reachable yet is tried again, for a few seconds.
        """
        return self.admin.register(
            uri,
            force=force,
            use_http_11=use_http_11,
            timeout=timeout,
            wait=min(timeout, 5.0),
            retry_server_errors=False,
        )

    def query(self, sql: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Run SQL on the admin query endpoint (``sys_invocation``, ``sys_journal``...).

        Each row has every selected column, in order, with None for SQL NULL.
        """
        return self.admin.query(sql, timeout=timeout)

    def version(self) -> dict[str, Any]:
        """``GET /version``: the server version and ``features`` (e.g. ``protocol_v7``)."""
        return self.admin.version()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running() else "stopped"
        return (
            f"<RestateServer {state} ingress={self.ingress_port} admin={self.admin_port} "
            f"v7={self.enable_protocol_v7}>"
        )
