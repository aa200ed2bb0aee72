"""Child processes of the tooling: loopback ports, the environment they get, and the base
class that starts one with its output in a log file and stops it (also when we die first).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

from framework._dev.wait import WaitTimeout, wait_until
from framework.exceptions import RestateServerError

__all__ = [
    "LOOPBACK",
    "LOOPBACK_HOSTS",
    "ChildProcess",
    "accepts_connections",
    "child_env",
    "free_port",
    "last_lines",
    "live_processes",
    "port_is_free",
]

LOOPBACK = "127.0.0.1"
# The names loopback goes by: children reach them directly, whatever HTTP(S)_PROXY says.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def accepts_connections(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections at ``host``:``port`` now."""
    try:
        # An IPv6 host is bracketed in binds and URLs, not in socket addresses.
        with socket.create_connection((host.strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


def last_lines(text: str, count: int = 40) -> str:
    """The last ``count`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-count:])


def child_env() -> dict[str, str]:
    """This process's environment, minus our own settings, plus loopback in NO_PROXY."""
    env = dict(os.environ)
    env.pop("RESTATE_SERVER_BIN", None)
    for name in ("NO_PROXY", "no_proxy"):
        entries = [e for e in env.get(name, "").split(",") if e]
        entries += [host for host in LOOPBACK_HOSTS if host not in entries]
        env[name] = ",".join(entries)
    return env


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


# Children started and not yet reaped, so they can be stopped when this process exits.
_live: set[ChildProcess] = set()


def live_processes() -> list[ChildProcess]:
    """The children started from this process that still run (for log dumps)."""
    return list(_live)


@atexit.register
def _stop_leftovers() -> None:
    for child in list(_live):
        with contextlib.suppress(Exception):
            child.stop()


class ChildProcess:
    """A child process with its output in a log file: what the runners share.

    It runs in a session of its own (Ctrl-C in a terminal reaches us, and we stop it), gets
    SIGTERM when this process dies (Linux), and is stopped at exit if still running.
    Subclasses say how to ``start`` it.
    """

    kind: ClassVar[str] = "process"
    """What the child is, in messages and in the name of a temporary log file."""

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
                return last_lines(handle.read().decode(errors="replace"), lines)
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def _spawn(self, command: list[str], env: dict[str, str], cwd: Path | None) -> None:
        if self.running():
            raise RestateServerError(f"{self.kind} is already running (pid {self.pid})")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"{self.kind}-", suffix=".log")
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
            group = process.pid

            def group_gone() -> bool:
                try:
                    os.killpg(group, 0)
                except (ProcessLookupError, PermissionError):
                    return True
                return False

            # Best effort: a member stuck in uninterruptible sleep must not hang the caller.
            with contextlib.suppress(WaitTimeout):
                wait_until(group_gone, "the process group to go", timeout=10.0, interval=0.01)
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

    def _wait_while_running(
        self,
        check: Callable[[], object],
        what: str,
        *,
        timeout: float,
        retry_on: tuple[type[Exception], ...] = (),
    ) -> int | None:
        """Poll ``check`` until it returns something truthy: None then, or the child's exit
        code if it exits first. Raises ``WaitTimeout`` after ``timeout`` seconds."""

        def settled() -> tuple[int | None] | None:
            code = self._exit_code()
            if code is not None:
                return (code,)
            return (None,) if check() else None

        (code,) = wait_until(settled, what, timeout=timeout, retry_on=retry_on)
        return code

    def start(self) -> None:
        """Start the child (each kind says how)."""
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
