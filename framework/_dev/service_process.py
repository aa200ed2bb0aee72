"""``ServiceProcess``: an app served by ``python -m framework serve`` in a child process."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import framework
from framework._dev.processes import (
    LOOPBACK,
    ChildProcess,
    accepts_connections,
    child_env,
    free_port,
    port_is_free,
)
from framework._dev.wait import WaitTimeout
from framework.exceptions import RestateServerError

__all__ = ["ServiceProcess"]


class ServiceProcess(ChildProcess):
    """``python -m framework serve APP_REF`` on 127.0.0.1:``port`` in a child process."""

    kind = "service"

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
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        """The command line that serves the app."""
        return [
            sys.executable,
            "-m",
            "framework",
            "serve",
            self.app_ref,
            "--bind",
            f"{LOOPBACK}:{self.port}",
        ]

    def start(self, timeout: float = 30.0) -> None:
        """Start serving and wait until the port accepts connections."""
        if self.running():
            raise RestateServerError(f"{self.app_ref} is already being served (pid {self.pid})")
        if not port_is_free(self.port):
            raise RestateServerError(
                f"port {self.port} on {LOOPBACK} is already in use; stop what listens there "
                "or let ServiceProcess pick a free port"
            )
        env = child_env()
        env["PYTHONUNBUFFERED"] = "1"
        # The framework package must be importable from the child wherever it runs.
        package_root = str(Path(framework.__file__).resolve().parents[1])
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if package_root not in paths:
            paths.append(package_root)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(self._extra_env)
        self._spawn(self.command(), env, cwd=self.cwd)
        try:
            code = self._wait_while_running(
                lambda: accepts_connections(self.port),
                f"{self.app_ref} to listen on port {self.port}",
                timeout=timeout,
            )
        except WaitTimeout:
            log = self.log_tail()
            self._kill()
            raise RestateServerError(
                f"serving {self.app_ref} did not listen on port {self.port} within "
                f"{timeout:.0f}s; its output ends with:\n{log}"
            ) from None
        if code is not None:
            log = self.log_tail()
            self._reaped()
            raise RestateServerError(
                f"serving {self.app_ref} exited with code {code} before listening on "
                f"port {self.port}; its output ends with:\n{log}"
            )

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
