"""``python -m framework``: serve (graceful shutdown, workers), dev (reload), register, errors.

Every command runs as a real child process; services are modules written to ``tmp_path``
and found through PYTHONPATH, and the processes a command started are followed by PID in
/proc until they are gone.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from framework._dev.install import ensure_restate_server
from framework._dev.processes import free_port, port_is_free
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._server.serve import GRACEFUL_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]

SLOW_MODULE = """
import os
import time

from framework import Context, Service, app as make_app

slow = Service({name!r})
LEDGER = os.environ["CLI_TEST_LEDGER"]


def _note(line: str) -> None:
    with open(LEDGER, "a") as handle:
        handle.write(line + "\\n")


@slow.handler()
async def work(ctx: Context, name: str) -> str:
    def step() -> str:
        _note(f"start {{os.getpid()}}")
        time.sleep(1.0)
        _note(f"end {{os.getpid()}}")
        return f"done {{name}}"

    return await ctx.run_typed("a one second step", step)


app = make_app([slow])
"""

GREETER_MODULE = """
from framework import Context, Service, app as make_app

greeter = Service({name!r})


@greeter.handler()
async def hi(ctx: Context, name: str) -> str:
    return {answer}


app = make_app([greeter])
"""


# -- helpers --------------------------------------------------------------------------------


def _env(module_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(module_dir), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _framework(*args: str) -> list[str]:
    return [sys.executable, "-m", "framework", *args]


class _Output:
    """Collects a child's combined output in a thread; wait for lines without blocking."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # The reader closes the pipe at its end: nothing else knows when it is done with it.
        with self._stream:
            for line in self._stream:
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float, *, start: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the output after ``start`` characters."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = regex.search("".join(self._lines), start)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {pattern!r} in the output within {timeout:.0f}s; it was:\n"
                        + "".join(self._lines)
                    )
                self._changed.wait(min(remaining, 0.2))

    def close(self) -> None:
        self._thread.join(timeout=10)


def _children(pid: int) -> set[int]:
    """PIDs of the processes whose parent is ``pid`` (from /proc)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _assert_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if _alive(pid)}
        if not alive:
            return
        if time.monotonic() > deadline:
            commands = {
                pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
                for pid in alive
                if Path(f"/proc/{pid}/cmdline").exists()
            }
            raise AssertionError(f"still running {timeout:.0f}s after the stop: {commands}")
        time.sleep(0.05)


def _wait_listening(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        assert process.poll() is None, f"exited with code {process.returncode}"
        assert time.monotonic() < deadline, f"nothing listened on port {port} in {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def spawned() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts commands (stdout+stderr in a pipe); kills any left running after the test."""
    processes: list[subprocess.Popen[str]] = []

    def start(args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        process: subprocess.Popen[str] = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
        processes.append(process)
        return process

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                leftovers = _descendants(process.pid)
                process.kill()
                process.wait(10)
                for pid in leftovers:
                    if _alive(pid):
                        os.kill(pid, signal.SIGKILL)


# -- bad invocations ------------------------------------------------------------------------


def test_bad_app_references_are_one_line_errors_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "cli_present.py").write_text("value = 1\n")
    cases = [
        (["serve", "cli_no_such_module:app"], "cli_no_such_module"),
        (["dev", "cli_no_such_module:app"], "cli_no_such_module"),
        (["run", "cli_no_such_module:app"], "cli_no_such_module"),
        (["serve", "cli_present:nope"], "'nope'"),
        (["dev", "cli_present:nope"], "'nope'"),
        (["serve", "cli_present"], "MODULE:ATTRIBUTE"),
        (["serve", "cli_present:value"], "not an ASGI app"),
    ]
    for args, named in cases:
        result = subprocess.run(
            _framework(*args),
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert named in lines[0], (args, lines[0])
        assert result.stdout == "", (args, result.stdout)
    assert not (tmp_path / ".restate").exists()  # dev/run started nothing


def test_bad_options_exit_2_and_a_busy_port_exits_1(tmp_path: Path) -> None:
    for args in (
        ["serve", "tests.asgi_echo:app", "--workers", "0"],
        ["serve", "tests.asgi_echo:app", "--bind", "nonsense"],
        ["serve", "tests.asgi_echo:app", "--log-level", "loud"],
        ["dev", "tests.asgi_echo:app", "--port", "70000"],
        ["frobnicate"],
    ):
        result = subprocess.run(
            _framework(*args), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, (args, result.stderr)
        assert "error:" in result.stderr.splitlines()[-1], (args, result.stderr)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            _framework("serve", "tests.asgi_echo:app", "--bind", f"127.0.0.1:{port}"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


# -- serve: graceful shutdown ---------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_an_invocation_in_flight_finish(
    workers: int,
    tmp_path: Path,
    restate_server: RestateServer,
    spawned: Callable[..., subprocess.Popen[str]],
) -> None:
    name = f"CliSlow{workers}"
    (tmp_path / "cli_slow.py").write_text(SLOW_MODULE.format(name=name))
    ledger = tmp_path / "ledger.txt"
    port = free_port()
    args = ["serve", "cli_slow:app", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    if workers > 1:
        args += ["--log-level", "warning"]
    started = time.monotonic()
    service = spawned(
        _framework(*args), cwd=tmp_path, env=_env(tmp_path, CLI_TEST_LEDGER=str(ledger))
    )
    output = _Output(service)
    _wait_listening(port, service)
    startup = time.monotonic() - started
    processes = _descendants(service.pid)
    if workers > 1:
        assert len(processes) >= workers, processes  # the workers (and multiprocessing's helper)
    restate_server.register(f"http://127.0.0.1:{port}")

    answer: dict[str, object] = {}

    def call() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            response = client.post(f"{restate_server.ingress_url}/{name}/work", json="Ann")
        answer["status"], answer["body"], answer["at"] = (
            response.status_code,
            response.json(),
            time.monotonic(),
        )

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    while not ledger.exists() or "start" not in ledger.read_text():
        assert time.monotonic() < deadline, "the step did not start"
        time.sleep(0.02)

    signalled = time.monotonic()
    service.send_signal(signal.SIGTERM)  # mid-step: it has about a second to go
    assert service.wait(GRACEFUL_TIMEOUT + 10) == 0
    exited = time.monotonic()
    caller.join(30)
    output.close()

    assert answer.get("status") == 200 and answer.get("body") == "done Ann", (answer, output.text)
    # One attempt, finished by the process that got the signal: no retry on another one.
    lines = ledger.read_text().split()
    assert lines[0::2] == ["start", "end"], lines
    assert lines[1] == lines[3], lines
    # It waited for the invocation, and no longer than that (not the whole grace period).
    assert exited - signalled < GRACEFUL_TIMEOUT, exited - signalled
    _assert_gone(processes, timeout=5)
    log = output.text
    assert "Traceback" not in log, log
    if workers == 1:
        assert "Listening at: http://127.0.0.1" in log and "Shutting down" in log, log
    else:  # --log-level warning hides the INFO lines
        assert "Listening at" not in log and "Shutting down" not in log, log
    print(
        f"workers={workers}: listening after {startup:.2f}s, stopped {exited - signalled:.2f}s "
        "after SIGTERM"
    )


# -- register -------------------------------------------------------------------------------


def test_register_waits_for_the_service_then_registers_it(
    tmp_path: Path, restate_server: RestateServer, spawned: Callable[..., subprocess.Popen[str]]
) -> None:
    (tmp_path / "cli_registered.py").write_text(
        GREETER_MODULE.format(name="CliRegistered", answer='f"hi {name}"')
    )
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    # Nothing serves there yet: the server's discovery fails (5xx), register keeps trying.
    register = spawned(
        _framework("register", uri, "--admin-url", restate_server.admin_url, "--wait", "60"),
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    time.sleep(1.0)
    assert register.poll() is None, register.communicate()
    service = ServiceProcess(
        "cli_registered:app",
        port=port,
        env={"PYTHONPATH": _env(tmp_path)["PYTHONPATH"]},
        log_path=tmp_path / "service.log",
        cwd=tmp_path,
    )
    service.start()
    try:
        out, _ = register.communicate(timeout=60)
        assert register.returncode == 0, out
        assert re.fullmatch(
            rf"registered {re.escape(uri)} as dp_\w+: CliRegistered \(revision \d+\)\n", out
        ), out
        with httpx.Client(trust_env=False, timeout=30) as client:
            response = client.post(f"{restate_server.ingress_url}/CliRegistered/hi", json="Ann")
        assert response.json() == "hi Ann"
    finally:
        service.stop()

    # Without --wait, a deployment nobody serves fails at once, with the server's reason.
    result = subprocess.run(
        _framework(
            "register", f"http://127.0.0.1:{free_port()}", "--admin-url", restate_server.admin_url
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: POST ") and "META0003" in result.stderr, result.stderr


# -- dev: reload on change, stop everything -------------------------------------------------


def test_dev_reloads_changed_code_and_stops_every_child(
    tmp_path: Path, spawned: Callable[..., subprocess.Popen[str]]
) -> None:
    ensure_restate_server()  # installed beforehand, so the timeouts below are about starting
    module = tmp_path / "cli_dev_app.py"
    module.write_text(GREETER_MODULE.format(name="CliDev", answer='f"hello {name}"'))
    port, ingress_port, admin_port = free_port(), free_port(), free_port()
    started = time.monotonic()
    dev = spawned(
        _framework(
            "dev",
            "cli_dev_app:app",
            "--port",
            str(port),
            "--ingress-port",
            str(ingress_port),
            "--admin-port",
            str(admin_port),
        ),
        cwd=tmp_path,
        env=_env(tmp_path),
        # As in a terminal: SIGINT is Ctrl-C even if this test runs with it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    output = _Output(dev)
    output.wait_for(r"Ctrl-C stops everything", timeout=120)
    ready = time.monotonic() - started
    text = output.text
    assert f"ingress:  http://127.0.0.1:{ingress_port}" in text, text
    assert f"admin:    http://127.0.0.1:{admin_port}" in text, text
    assert (
        f"try:  curl -X POST http://127.0.0.1:{ingress_port}/CliDev/hi "
        "-H 'content-type: application/json' -d '\"Ann\"'" in text
    ), text
    service_pid = int(output.wait_for(r"service: .*pid (\d+)\)", 1).group(1))
    server_pid = int(output.wait_for(r"server: +pid (\d+)", 1).group(1))
    children = _descendants(dev.pid)
    assert {service_pid, server_pid} <= children, (children, service_pid, server_pid)

    ingress = f"http://127.0.0.1:{ingress_port}"
    with httpx.Client(base_url=ingress, trust_env=False, timeout=30) as client:
        assert client.post("/CliDev/hi", json="Ann").json() == "hello Ann"

        mark = len(output.text)
        changed_at = time.monotonic()
        module.write_text(GREETER_MODULE.format(name="CliDev", answer='f"bonjour {name}!"'))
        reloaded = output.wait_for(
            r"\[dev\] reloaded: service restarted \(pid (\d+)\) and re-registered "
            rf"http://127\.0\.0\.1:{port} with force=true: CliDev \(revision (\d+)\)",
            timeout=30,
            start=mark,
        )
        reload_time = time.monotonic() - changed_at
        assert "[dev] cli_dev_app.py changed: restarting the service" in output.text[mark:]
        new_pid, revision = int(reloaded.group(1)), int(reloaded.group(2))
        assert new_pid != service_pid and revision >= 2
        assert not _alive(service_pid)
        assert client.post("/CliDev/hi", json="Ann").json() == "bonjour Ann!"
    children |= _descendants(dev.pid)
    assert new_pid in children

    stopping = time.monotonic()
    dev.send_signal(signal.SIGINT)
    assert dev.wait(30) == 0, output.text
    stop_time = time.monotonic() - stopping
    output.close()
    assert "[dev] stopped the service and restate-server" in output.text
    _assert_gone(children, timeout=10)
    for listened in (port, ingress_port, admin_port):
        assert port_is_free(listened), listened
    print(
        f"dev: ready after {ready:.2f}s, reloaded {reload_time:.2f}s after the edit, "
        f"stopped in {stop_time:.2f}s"
    )
