"""The development harness against the real thing: restate-server and service child processes."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from framework._dev.install import RESTATE_SERVER_VERSION, ensure_restate_server
from framework._dev.processes import free_port, port_is_free
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._server.common import load_app
from framework._server.hypercorn import hypercorn_config
from framework.exceptions import AppLoadError, RestateServerError

ROOT = Path(__file__).resolve().parents[1]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _status(url: str) -> int:
    with NO_PROXY.open(url, timeout=5) as response:
        status: int = response.status
        return status


def _listen_addresses(port: int) -> set[str]:
    """The IPv4/IPv6 addresses something listens on at ``port``, read from /proc/net."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_server_answers_health_on_loopback_only(restate_server: RestateServer) -> None:
    assert restate_server.ingress_url.startswith("http://127.0.0.1:")
    assert restate_server.admin_url.startswith("http://127.0.0.1:")
    assert _status(f"{restate_server.admin_url}/health") == 200
    assert _status(f"{restate_server.ingress_url}/restate/health") == 200
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening addresses from")
    loopback = "0100007F"  # 127.0.0.1, little-endian hex
    for port in (restate_server.ingress_port, restate_server.admin_port, restate_server.node_port):
        assert port is not None
        assert _listen_addresses(port) == {loopback}, port


def test_version_reports_the_protocol_v7_switch(
    restate_server: RestateServer, restate_server_v7: RestateServer
) -> None:
    default = restate_server.version()
    assert default["version"] == RESTATE_SERVER_VERSION
    assert default["features"]["protocol_v7"] is False
    assert restate_server_v7.version()["features"]["protocol_v7"] is True


def test_query_returns_rows(restate_server: RestateServer) -> None:
    assert restate_server.query("SELECT 1 AS one, 'a' AS letter") == [{"one": 1, "letter": "a"}]
    # The server's JSON drops NULL columns; query() puts them back, in select order.
    rows = restate_server.query("SELECT NULL AS nothing, 2 AS two")
    assert rows == [{"nothing": None, "two": 2}] and list(rows[0]) == ["nothing", "two"]
    rows = restate_server.query(
        "SELECT id, status, last_failure, last_failure_error_code, "
        "pinned_service_protocol_version FROM sys_invocation"
    )
    assert isinstance(rows, list)
    with pytest.raises(RestateServerError, match="no_such_column"):
        restate_server.query("SELECT no_such_column FROM sys_invocation")


def test_register_reports_the_servers_error(restate_server: RestateServer) -> None:
    with pytest.raises(RestateServerError, match=r"HTTP 5\d\d.*META0003"):
        restate_server.register(f"http://127.0.0.1:{free_port()}")


def test_stop_restart_and_cleanup(tmp_path: Path) -> None:
    server = RestateServer(log_path=tmp_path / "server.log")
    server.start()
    try:
        pid, base_dir = server.pid, server.base_dir
        ports = (server.ingress_port, server.admin_port, server.node_port)
        assert pid is not None and base_dir is not None and base_dir.is_dir()
        server.restart()
        assert (server.ingress_port, server.admin_port, server.node_port) == ports
        assert server.base_dir == base_dir and server.pid != pid
        assert _gone(pid)
        assert _status(f"{server.admin_url}/health") == 200
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
    assert _gone(pid)
    assert server.pid is None and not server.running()
    assert not base_dir.exists()  # a temp base dir goes with the server
    # Stopped with SIGTERM, not killed (its "gracefully shutdown" line may come after the
    # log is closed, so the signal's line is what shows it).
    assert 'reason: "received signal SIGTERM"' in (tmp_path / "server.log").read_text()
    server.stop()  # idempotent


def test_ensure_restate_server_is_idempotent() -> None:
    first = ensure_restate_server()
    mtime = first.stat().st_mtime_ns
    second = ensure_restate_server()
    assert first == second
    assert second.stat().st_mtime_ns == mtime
    assert os.access(second, os.X_OK)


def test_service_process_serves_h2c_and_survives_kill(
    service_process: Callable[..., ServiceProcess],
) -> None:
    service = service_process("tests.asgi_echo:app")
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
        response = client.get(service.url)
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    assert response.text == "ok 2"

    pid = service.pid
    assert pid is not None
    service.kill()
    assert _gone(pid) and service.pid is None
    assert _refused(service.port) and port_is_free(service.port)

    service.restart()
    assert service.url.endswith(f":{service.port}")
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
        assert client.get(service.url).text == "ok 2"
    assert "Listening at: http://127.0.0.1" in service.log_text()


def test_service_process_reports_a_bad_app_ref(tmp_path: Path) -> None:
    service = ServiceProcess(
        "tests.no_such_module:app", log_path=tmp_path / "svc.log", cwd=ROOT, env={}
    )
    with pytest.raises(RestateServerError, match="no_such_module"):
        service.start(timeout=20)
    assert service.pid is None


def test_load_app_errors_name_what_is_wrong() -> None:
    with pytest.raises(AppLoadError, match="MODULE:ATTRIBUTE"):
        load_app("tests.asgi_echo")
    with pytest.raises(AppLoadError, match="no_such_module"):
        load_app("tests.no_such_module:app")
    with pytest.raises(AppLoadError, match="'nope'"):
        load_app("tests.asgi_echo:nope")
    assert callable(load_app("tests.asgi_echo:app"))


def test_hypercorn_config_raises_the_limits() -> None:
    config = hypercorn_config("127.0.0.1:9999")
    assert config.bind == ["127.0.0.1:9999"]
    assert config.h2_max_concurrent_streams >= 10_000
    assert config.keep_alive_timeout >= 600
    assert config.keep_alive_max_requests >= sys.maxsize
    assert 0 < config.graceful_timeout <= 10


def test_a_port_taken_between_picking_and_binding_is_picked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from framework._dev import restate_server as module

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        # The first port the server is given (its ingress) is held by another process yet
        # looks free when checked (the race this guards against): the server cannot bind it.
        monkeypatch.setattr(module, "free_port", lambda: next(ports, None) or free_port())
        monkeypatch.setattr(module, "port_is_free", lambda port: True)
        server = RestateServer()
        try:
            server.start()
            assert server.ingress_port != busy
            assert server.admin_port != busy
            assert server.node_port != busy
            assert _status(f"{server.admin_url}/health") == 200
        finally:
            server.stop()
