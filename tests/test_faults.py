"""Faults: crashes, restarts, slow and broken peers, graceful shutdown, against a real server.

The services are in tests/fault_services.py. Each side effect is a ledger line
``<key> <what...> <pid>`` under the test's ``FRAMEWORK_TEST_DIR``; the tests compare the ledger
with what the server journaled (``sys_journal``) and what the invocations returned.

- Exactly-once steps while the service process is SIGKILLed and restarted at random moments
  (``FAULTS_SEED=<n>`` replays a schedule; the seed is printed), on protocol v6 and v7.
- The Restate server restarted (same data dir and ports) with invocations running, sleeping
  and suspended on awakeables.
- Peers that stall, drop the connection mid-frame, or a handler that never returns.
- SIGTERM with many invocations in flight: graceful drain, exit 0, nothing lost or repeated.

Every wait is bounded; every process started here is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events
import httpx
import msgspec
import pytest

from framework._dev.processes import free_port
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._protocol import (
    EndMessage,
    ErrorMessage,
    FrameDecoder,
    InputCommandMessage,
    OutputCommandMessage,
    StartMessage,
    decode_message,
    encode_frame,
)
from tests.fault_services import STEPS
from tests.processes import process_tree
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
SERVICES = "tests.fault_services"
T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------------


def ledger(directory: Path) -> list[list[str]]:
    """The ledger's lines, split into words (the last word is the writer's pid)."""
    try:
        text = (directory / "ledger.txt").read_text()
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines() if line]


def lines_of(directory: Path, what: str) -> dict[str, list[list[str]]]:
    """Ledger lines whose second word is ``what``, by key."""
    found: dict[str, list[list[str]]] = defaultdict(list)
    for words in ledger(directory):
        if len(words) > 1 and words[1] == what:
            found[words[0]].append(words)
    return found


def child_env(test_dir: Path) -> dict[str, str]:
    paths = [str(ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {"FRAMEWORK_TEST_DIR": str(test_dir), "PYTHONPATH": os.pathsep.join(paths)}


class Ingress:
    """Sends and attaches through a server's ingress."""

    def __init__(self, server: RestateServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.ingress_url, timeout=30, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def send(self, target: str, body: Any, idempotency_key: str | None = None) -> str:
        """``POST /{target}/send``; the invocation id. Retried (same idempotency key) on
        connection errors, so a send is never lost nor doubled."""
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        deadline = time.monotonic() + 30
        while True:
            try:
                response = self.http.post(
                    f"/{target}/send", content=json.dumps(body), headers=headers
                )
                break
            except httpx.TransportError:
                if idempotency_key is None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert response.status_code in (200, 202), f"{target}: {response.text}"
        invocation_id: str = response.json()["invocationId"]
        return invocation_id

    def attach(self, invocation_id: str, timeout: float = 30) -> Any:
        response = self.http.get(f"/restate/invocation/{invocation_id}/attach", timeout=timeout)
        assert response.status_code == 200, (
            f"{invocation_id}: {response.status_code} {response.text}"
        )
        return response.json()

    def statuses(self, ids: list[str]) -> Counter[str]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):
            chunk = ", ".join(f"'{i}'" for i in ids[start : start + 100])
            rows += self.server.query(
                f"SELECT id, status FROM sys_invocation WHERE id IN ({chunk})"
            )
        return Counter(str(row["status"]) for row in rows)

    def wait_completed(self, ids: list[str], timeout: float) -> Counter[str]:
        return wait_until(
            lambda: ((s := self.statuses(ids))["completed"] == len(ids) and s) or None,
            f"{len(ids)} invocations to complete (last seen: {self.statuses(ids)})",
            timeout,
            interval=0.25,
        )


def journal_runs(server: RestateServer, ids: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per invocation, per step name: the values the journal holds for it (JSON text).

    A step the server acknowledged is a Run command with its completion notification; more
    than one value for one name would mean the step was journaled twice.
    """
    runs: dict[str, dict[str, list[str]]] = {i: defaultdict(list) for i in ids}
    for start in range(0, len(ids), 50):
        chunk = ", ".join(f"'{i}'" for i in ids[start : start + 50])
        rows = server.query(
            "SELECT id, index, entry_type, name, entry_json FROM sys_journal "
            f"WHERE id IN ({chunk}) ORDER BY id, index"
        )
        names: dict[tuple[str, int], str] = {}
        for row in rows:
            entry = json.loads(row["entry_json"])
            if row["entry_type"] == "Command: Run":
                run = entry["Command"]["Run"]
                names[(row["id"], run["completion_id"])] = run["name"]
            elif row["entry_type"] == "Notification: Run":
                done = entry["Notification"]["Completion"]["Run"]
                name = names[(row["id"], done["completion_id"])]
                value = bytes(done["result"]["Success"]).decode()
                runs[row["id"]][name].append(value)
    return runs


# -- 1. exactly-once steps while the service process is SIGKILLed -----------------------------

INVOCATIONS = 200
KILLS = 5
SEND_SECONDS = 8.0  # the invocations are sent evenly over this long; the kills fall inside


@pytest.mark.parametrize("server_fixture", ["restate_server", "restate_server_v7"])
def test_steps_run_once_while_the_service_is_killed(
    server_fixture: str,
    request: pytest.FixtureRequest,
    service_process: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> None:
    server: RestateServer = request.getfixturevalue(server_fixture)
    seed = int(os.environ.get("FAULTS_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"\n[{server_fixture}] FAULTS_SEED={seed}")
    started = time.monotonic()
    service = service_process(f"{SERVICES}:crash_app", env=child_env(tmp_path))
    server.register(service.url)
    ingress = Ingress(server)

    run_id = uuid.uuid4().hex[:8]
    keys = [f"crash-{run_id}-{i:03d}" for i in range(INVOCATIONS)]
    ids: dict[str, str] = {}
    send_errors: list[BaseException] = []

    def send_all() -> None:
        try:
            for i, key in enumerate(keys):
                delay = started + 0.2 + i * SEND_SECONDS / INVOCATIONS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ids[key] = ingress.send("FaultCrash/five_steps", key, idempotency_key=key)
        except BaseException as error:  # reported by the main thread
            send_errors.append(error)

    # Kill moments: random, at least a second apart, while invocations keep arriving.
    kill_at: list[float] = []
    while len(kill_at) < KILLS:
        moment = rng.uniform(0.5, SEND_SECONDS)
        if all(abs(moment - other) >= 1.0 for other in kill_at):
            kill_at.append(moment)
    kill_at.sort()
    killed: list[tuple[int, int]] = []  # (pid, invocations not completed at the kill)
    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    try:
        for moment in kill_at:
            delay = started + moment - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = [ids[k] for k in list(ids)]
            completed = ingress.statuses(sent)["completed"] if sent else 0
            pid = service.pid
            assert pid is not None
            serving = process_tree(pid)  # the server and the worker processes it runs
            service.kill()
            # At most this many invocations were open at the kill (some may have completed
            # since the query, more may have been sent since the list was taken).
            killed.extend((each, len(ids) - completed) for each in serving)
            time.sleep(rng.uniform(0.0, 0.4))  # down for a moment; the server retries
            service.start()
        sender.join(SEND_SECONDS + 30)
        assert not sender.is_alive(), "sending the invocations took too long"
        assert not send_errors, send_errors
        all_ids = [ids[k] for k in keys]
        ingress.wait_completed(all_ids, timeout=90)
        finished = time.monotonic()
        outputs = {key: ingress.attach(ids[key]) for key in keys}
    finally:
        ingress.close()

    journal = journal_runs(server, all_ids)
    killed_pids = {pid for pid, _ in killed}
    by_step: dict[tuple[str, int], list[list[str]]] = defaultdict(list)
    for words in ledger(tmp_path):
        key, ledger_step, _value, _pid = words
        assert key in ids, f"a ledger line for an unknown invocation: {words}"
        by_step[(key, int(ledger_step))].append(words)

    reruns: list[list[str]] = []
    for key in keys:
        output = outputs[key]
        assert output["key"] == key and len(output["steps"]) == STEPS, output
        runs = journal[ids[key]]
        assert sorted(runs) == [f"step-{s}" for s in range(1, STEPS + 1)], (key, runs)
        for step in range(1, STEPS + 1):
            value = output["steps"][step - 1]
            # Journaled once, and what the handler returned is what the journal holds.
            assert runs[f"step-{step}"] == [json.dumps(value)], (key, step, runs)
            lines = by_step[(key, step)]
            # Nothing lost: the acknowledged value came from a run of the closure; and nothing
            # ran after the acknowledgement (it is the step's last line).
            assert lines, f"{key} step {step}: the closure never ran, yet {value} was returned"
            assert lines[-1][2] == value, (
                f"{key} step {step}: the acknowledged value {value} is not the last run of the "
                f"closure: {lines}"
            )
            for earlier in lines[:-1]:
                # A rerun only follows a crash of the process that ran it, before the ack.
                assert earlier[3] in {str(p) for p in killed_pids}, (key, step, lines)
                assert earlier[3] != lines[-1][3], (key, step, lines)
                reruns.append(earlier)
    # A crash costs an invocation at most one unacknowledged step (steps run one by one), and
    # only invocations not yet completed at that moment can lose one.
    per_kill = Counter(words[3] for words in reruns)
    per_invocation_and_kill = Counter((words[0], words[3]) for words in reruns)
    assert max(per_invocation_and_kill.values(), default=0) <= 1, per_invocation_and_kill
    for pid, open_ in killed:
        assert per_kill[str(pid)] <= open_, (pid, per_kill[str(pid)], open_)
    print(
        f"[{server_fixture}] {INVOCATIONS} invocations x {STEPS} steps, {KILLS} SIGKILLs at "
        f"{', '.join(f'{m:.2f}' for m in kill_at)} s: all completed "
        f"{finished - started:.1f} s after the start; closures rerun after a crash: "
        f"{len(reruns)} (per kill: {[per_kill[str(p)] for p, _ in killed]}, invocations open "
        f"at each kill: {[o for _, o in killed]}); lost steps 0, duplicated acknowledged "
        "steps 0"
    )


# -- 2. the Restate server restarted with invocations in flight -------------------------------

PER_KIND = 10


def test_server_restart_with_invocations_running_sleeping_and_suspended(
    service_process: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    data = tmp_path / "restate-data"
    server = RestateServer(base_dir=data, log_path=tmp_path / "restate-server.log")
    server.start()
    ingress: Ingress | None = None
    try:
        service = service_process(f"{SERVICES}:restart_app", env=child_env(tmp_path))
        server.register(service.url)
        ingress = Ingress(server)
        run_id = uuid.uuid4().hex[:8]
        kinds = ("sleeper", "waiter", "stepper")
        keys = {kind: [f"{kind}-{run_id}-{i}" for i in range(PER_KIND)] for kind in kinds}
        ids = {
            key: ingress.send(f"FaultRestart/{kind}", key, idempotency_key=key)
            for kind in kinds
            for key in keys[kind]
        }
        sent = time.monotonic()

        def suspended() -> bool:
            rows = server.query(
                "SELECT status, count(*) AS n FROM sys_invocation "
                f"WHERE target_service_name = 'FaultRestart' AND idempotency_key LIKE "
                f"'%-{run_id}-%' AND target_handler_name IN ('sleeper', 'waiter') GROUP BY status"
            )
            return {r["status"]: r["n"] for r in rows} == {"suspended": 2 * PER_KIND}

        wait_until(suspended, "the sleepers and waiters to suspend", timeout=20)
        slow_started = lines_of(tmp_path, "slow-start")
        assert set(keys["stepper"]) <= set(slow_started), "the slow steps did not all start"
        in_step = len(set(keys["stepper"]) - set(lines_of(tmp_path, "slow-end")))
        status_before = ingress.statuses(list(ids.values()))
        ports = (server.ingress_port, server.admin_port, server.node_port)
        old_pid = server.pid
        restart_began = time.monotonic()
        server.restart()
        restarted = time.monotonic()
        assert (server.ingress_port, server.admin_port, server.node_port) == ports
        assert server.base_dir == data.resolve() and server.pid != old_pid
        # The new server process knows every invocation (none lost across the restart).
        assert sum(ingress.statuses(list(ids.values())).values()) == len(ids)

        awakeables = {words[0]: words[2] for words in ledger(tmp_path) if words[1] == "awakeable"}
        assert set(awakeables) == set(keys["waiter"])
        for key, awakeable in awakeables.items():
            response = ingress.http.post(
                f"/restate/awakeables/{awakeable}/resolve",
                content=json.dumps(f"value-{key}"),
                headers={"content-type": "application/json"},
            )
            assert response.status_code in (200, 202), response.text
        ingress.wait_completed(list(ids.values()), timeout=60)
        done = time.monotonic()
        expected = {
            **{k: f"{k} slept" for k in keys["sleeper"]},
            **{k: f"{k} got value-{k}" for k in keys["waiter"]},
            **{k: f"{k} slow done" for k in keys["stepper"]},
        }
        assert {key: ingress.attach(ids[key]) for key in ids} == expected
    finally:
        if ingress is not None:
            ingress.close()
        server.stop()

    # Steps the journal acknowledged before the restart ran once; a step that was running when
    # the server went away may run again (it never reached the journal), but ends once.
    count = Counter((words[0], words[1]) for words in ledger(tmp_path))
    for key in keys["sleeper"]:
        assert count[(key, "before")] == 1 and count[(key, "after")] == 1, key
    for key in keys["waiter"]:
        assert count[(key, "awakeable")] == 1, key
    for key in keys["stepper"]:
        assert count[(key, "slow-end")] >= 1, key
    step_reruns = sum(count[(key, "slow-start")] - 1 for key in keys["stepper"])
    step_ends = sum(count[(key, "slow-end")] for key in keys["stepper"])
    assert step_reruns <= in_step
    print(
        f"\n{len(ids)} invocations (suspended before the restart: {status_before}); server "
        f"restart took {restarted - restart_began:.1f} s, {restart_began - sent:.1f} s after "
        f"sending; all completed {done - restarted:.1f} s after it; slow steps still running at "
        f"the restart: {in_step}, run again after it: {step_reruns} (slow-step ends in all: "
        f"{step_ends})"
    )


# -- 3. slow and broken peers -----------------------------------------------------------------

V6 = "application/vnd.restate.invocation.v6"


def start_frames(key: str, *, with_input: bool = True) -> bytes:
    """A v6 journal opening: StartMessage announcing the input entry, and (maybe) that entry."""
    start = StartMessage(
        id=uuid.uuid4().bytes, debug_id=f"inv_{key}", known_entries=1, random_seed=7
    )
    frames = encode_frame(start)
    if with_input:
        frames += encode_frame(InputCommandMessage(value=msgspec.json.encode(key)))
    return frames


class RawPeer:
    """A hand-driven HTTP/2 client on a raw socket: it can stall, reset, or cut a frame."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, path: str, body: bytes = b"", *, end: bool = False) -> int:
        """POST ``path`` as an invocation stream, send ``body``, keep the stream open."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{self.port}"),
            (":path", path),
            ("content-type", V6),
            ("accept", V6),
        ]
        self.conn.send_headers(stream, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(stream, body, end_stream=end)
        self.flush()
        return stream

    def half_data_frame(self, stream: int, payload: bytes) -> None:
        """A DATA frame header announcing ``2 * len(payload)`` bytes, then only ``payload``."""
        length = 2 * len(payload)
        header = length.to_bytes(3, "big") + b"\x00\x00" + stream.to_bytes(4, "big")
        self.sock.sendall(header + payload)

    def reset(self, stream: int) -> None:
        self.conn.reset_stream(stream)
        self.flush()

    def read(self, seconds: float) -> list[h2.events.Event]:
        """Read and handle what the endpoint sends for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self.events += self.conn.receive_data(data)
            self.flush()
        return self.events

    def close(self) -> None:
        self.sock.close()


def direct_invoke(client: httpx.Client, path: str, body: bytes) -> list[Any]:
    """One complete request/response invocation; the messages of the answer."""
    response = client.post(path, content=body, headers={"content-type": V6, "accept": V6})
    assert response.status_code == 200, response.text
    decoder = FrameDecoder()
    decoder.feed(response.content)
    messages = []
    while (frame := decoder.next_frame()) is not None:
        messages.append(decode_message(frame[0], frame[2]))
    return messages


def echo_works(client: httpx.Client, text: str) -> float:
    """Invoke FaultPeers/echo directly; how long it took."""
    began = time.monotonic()
    messages = direct_invoke(client, "/invoke/FaultPeers/echo", start_frames(text))
    assert [type(m) for m in messages] == [OutputCommandMessage, EndMessage], messages
    assert msgspec.json.decode(messages[0].value) == f"echo {text}"
    return time.monotonic() - began


def busy_tasks(client: httpx.Client) -> dict[str, int]:
    """The service's handler and request tasks, besides the invocation asking."""
    start = StartMessage(id=uuid.uuid4().bytes, debug_id="inv_tasks", known_entries=1)
    body = encode_frame(start) + encode_frame(InputCommandMessage())
    messages = direct_invoke(client, "/invoke/FaultPeers/tasks", body)
    counts: dict[str, int] = msgspec.json.decode(messages[0].value)
    return counts


IDLE = {"handlers": 0, "requests": 0}


@pytest.fixture
def peers_service(
    service_process: Callable[..., ServiceProcess], tmp_path: Path
) -> Iterator[tuple[ServiceProcess, httpx.Client]]:
    service = service_process(f"{SERVICES}:peers_app", env=child_env(tmp_path))
    with httpx.Client(
        base_url=service.url, http1=False, http2=True, timeout=10, trust_env=False
    ) as client:
        yield service, client


def test_stalled_peers_do_not_block_others_and_are_freed_when_they_go(
    peers_service: tuple[ServiceProcess, httpx.Client], tmp_path: Path
) -> None:
    """A peer that opens invocation streams and then neither sends more nor closes them.

    The endpoint has no timeout of its own on an open stream: bounding an attempt is the
    Restate server's job (its inactivity and abort timeouts). What the endpoint owes: the
    stalled streams hold nothing up, and their handlers end as soon as the peer is gone.
    """
    service, client = peers_service
    echo_works(client, "warm-up")
    assert busy_tasks(client) == IDLE
    peer = RawPeer(service.port)
    other = RawPeer(service.port)
    try:
        # 5 streams in a handler that waits for a durable timer only the peer could complete,
        # 5 that sent StartMessage but never the journal entry it announced.
        holding = [f"hold-{i}" for i in range(5)]
        for key in holding:
            peer.open("/invoke/FaultPeers/hold", start_frames(key))
        for i in range(5):
            peer.open("/invoke/FaultPeers/hold", start_frames(f"half-{i}", with_input=False))
        # One more on another connection, to be reset (RST_STREAM) rather than disconnected.
        reset_stream = other.open("/invoke/FaultPeers/hold", start_frames("reset-me"))
        reset_half = other.open("/invoke/FaultPeers/hold", start_frames("x", with_input=False))
        wait_until(
            lambda: len(lines_of(tmp_path, "start")) == 6, "the 6 handlers to start", timeout=10
        )
        peer.read(0.5)
        other.read(0.2)
        assert not lines_of(tmp_path, "finally"), "a handler ended while its peer was there"
        assert not any(k.startswith("half-") for k in lines_of(tmp_path, "start"))
        # Meanwhile the endpoint serves everybody else promptly.
        latencies = [echo_works(client, f"meanwhile-{i}") for i in range(20)]
        while_stalled = busy_tasks(client)
        assert while_stalled == {"handlers": 6, "requests": 12}

        other.reset(reset_stream)
        other.reset(reset_half)
        wait_until(lambda: "reset-me" in lines_of(tmp_path, "finally"), "the reset handler")
        wait_until(
            lambda: busy_tasks(client)["requests"] == 10, "the reset streams to end", timeout=5
        )
        peer.close()  # the peer goes away with its streams open
        gone = time.monotonic()
        wait_until(
            lambda: set(holding) <= set(lines_of(tmp_path, "finally")),
            "the handlers of the disconnected peer to end",
            timeout=10,
        )
        freed = time.monotonic() - gone
        wait_until(lambda: busy_tasks(client) == IDLE, "every stalled request to end", 10)
    finally:
        peer.close()
        other.close()
    cancelled = lines_of(tmp_path, "cancelled")
    assert set(cancelled) == {*holding, "reset-me"}, "handlers were not cancelled"
    assert service.running()
    log = service.log_text()
    assert "Traceback" not in log, log
    print(
        f"\nstalled streams: 5 waiting in the handler + 5 with half a journal, closed; 2 reset; "
        f"echo meanwhile max {max(latencies) * 1000:.0f} ms; tasks while stalled "
        f"{while_stalled}, none after; handlers freed {freed:.2f} s after "
        f"the disconnect; service log lines: {len(log.splitlines())}"
    )


def test_peers_that_break_mid_frame_leave_the_service_healthy(
    peers_service: tuple[ServiceProcess, httpx.Client], tmp_path: Path
) -> None:
    service, client = peers_service
    echo_works(client, "warm-up")
    whole = start_frames("cut")
    log_before = len(service.log_text().splitlines())

    # a. Half an HTTP/2 DATA frame, then the TCP connection is dropped.
    peer = RawPeer(service.port)
    stream = peer.open("/invoke/FaultPeers/hold")
    peer.half_data_frame(stream, whole[:12])
    peer.close()
    # b. Whole HTTP/2 frames carrying half a protocol message, then the connection drops.
    peer = RawPeer(service.port)
    peer.open("/invoke/FaultPeers/hold", whole[: len(whole) - 3])
    peer.read(0.2)
    peer.close()
    # c. Half a protocol message, and the request ends there (END_STREAM).
    answer_c = broken_journal(client, whole[: len(whole) - 3])
    # d. Bytes that are no protocol message at all.
    answer_d = broken_journal(client, b"\xff" * 64)

    # The service lives on and serves normally; nothing is left running.
    assert client.get("/health").status_code == 200
    for i in range(5):
        echo_works(client, f"after-{i}")
    wait_until(lambda: busy_tasks(client) == IDLE, "the broken requests to end", 10)
    assert service.running()
    assert not lines_of(tmp_path, "start"), "a handler ran on a broken journal"
    # A truncated or garbled journal is answered with a protocol error (571), not a crash.
    assert answer_c.code == 571 and "in the middle of a message" in answer_c.message, answer_c
    assert answer_d.code == 571, answer_d
    new_lines = service.log_text().splitlines()[log_before:]
    text = "\n".join(new_lines)
    assert "Traceback" not in text, text
    assert len(new_lines) <= 8, f"log spam for 4 broken requests:\n{text}"
    print(
        f"\nanswers: {answer_c.code} {answer_c.message!r}; {answer_d.code} "
        f"{answer_d.message!r}; service log for 4 broken peers ({len(new_lines)} lines):\n{text}"
    )


def broken_journal(client: httpx.Client, body: bytes) -> ErrorMessage:
    """Send ``body`` as a whole (ended) invocation request; the ErrorMessage answering it."""
    messages = direct_invoke(client, "/invoke/FaultPeers/hold", body)
    assert len(messages) == 1 and isinstance(messages[0], ErrorMessage), messages
    return messages[0]


def test_a_broken_journal_is_logged_clearly(
    peers_service: tuple[ServiceProcess, httpx.Client],
) -> None:
    """The endpoint tells the server what was wrong (ErrorMessage); its own log should say
    so too, once, in one line: an operator looking at the service sees why it refused."""
    service, client = peers_service
    echo_works(client, "warm-up")
    log_before = len(service.log_text().splitlines())
    answer = broken_journal(client, start_frames("cut")[:-3])
    with contextlib.suppress(AssertionError):  # reported below
        wait_until(lambda: answer.message in service.log_text(), "the error in the log", timeout=2)
    new_lines = service.log_text().splitlines()[log_before:]
    assert [line for line in new_lines if answer.message in line], (
        f"answered {answer.code} {answer.message!r} but logged nothing about it: {new_lines}"
    )
    assert "Traceback" not in "\n".join(new_lines)


def admin_kill(server: RestateServer, invocation_id: str) -> None:
    response = httpx.patch(
        f"{server.admin_url}/invocations/{invocation_id}/kill", timeout=10, trust_env=False
    )
    assert response.status_code in (200, 202), response.text


def test_a_handler_that_never_returns_is_freed_when_the_peer_aborts(
    peers_service: tuple[ServiceProcess, httpx.Client], tmp_path: Path
) -> None:
    """What the server does to a stuck attempt, done by hand: after its inactivity timeout it
    closes its request stream (END_STREAM), after the abort timeout it resets the stream (or
    drops the connection). The handler, stuck outside any durable step, must then end."""
    service, client = peers_service
    peer = RawPeer(service.port)
    dropped = RawPeer(service.port)
    try:
        reset_stream = peer.open("/invoke/FaultStuck/never_returns", start_frames("rst"), end=True)
        dropped.open("/invoke/FaultStuck/never_returns", start_frames("drop"), end=True)
        wait_until(lambda: len(lines_of(tmp_path, "start")) == 2, "the 2 handlers to start", 10)
        peer.read(0.3)
        peer.reset(reset_stream)
        dropped.close()
        gone = time.monotonic()
        with contextlib.suppress(AssertionError):  # reported below
            wait_until(
                lambda: {"rst", "drop"} <= set(lines_of(tmp_path, "finally")),
                "the stuck handlers to end once their peer gave up",
                timeout=3,
            )
        freed = sorted(lines_of(tmp_path, "finally"))
        busy = busy_tasks(client)
    finally:
        peer.close()
        dropped.close()
    print(
        f"\nstuck handlers ended after RST_STREAM / a dropped connection: {freed} "
        f"({time.monotonic() - gone:.1f} s later); busy tasks: {busy}"
    )
    assert freed == ["drop", "rst"], (
        f"handlers still running after their peer gave up (busy tasks: {busy}): the endpoint "
        "stops watching the stream once the request body has ended"
    )
    assert busy == IDLE, busy


def test_a_handler_that_never_returns_behind_the_server_is_aborted_and_freed(
    restate_server: RestateServer,
    peers_service: tuple[ServiceProcess, httpx.Client],
    tmp_path: Path,
) -> None:
    """FaultStuck has inactivity and abort timeouts of 1 s: the server abandons each attempt
    (restate-server 1.7.12 takes about 7 s for it) and retries. The abandoned attempt's
    handler must end (its ``finally`` runs) instead of sleeping on for an hour."""
    service, client = peers_service
    restate_server.register(service.url)
    ingress = Ingress(restate_server)
    key = f"stuck-{uuid.uuid4().hex[:8]}"
    try:
        invocation_id = ingress.send("FaultStuck/never_returns", key)
        sent = time.monotonic()
        wait_until(lambda: len(lines_of(tmp_path, "start")[key]) >= 2, "a second attempt", 20)
        retried = time.monotonic() - sent
        with contextlib.suppress(AssertionError):  # reported below
            wait_until(lambda: lines_of(tmp_path, "finally")[key], "the first handler to end", 2)
        attempts = len(lines_of(tmp_path, "start")[key])
        freed = len(lines_of(tmp_path, "finally")[key])
        busy = busy_tasks(client)
        admin_kill(restate_server, invocation_id)
        with contextlib.suppress(AssertionError):  # reported below
            wait_until(
                lambda: len(lines_of(tmp_path, "finally")[key]) >= attempts,
                "every attempt's handler to end after the kill",
                timeout=3,
            )
        killed_freed = len(lines_of(tmp_path, "finally")[key])
    finally:
        ingress.close()
    print(
        f"\nsecond attempt {retried:.1f} s after the send; handlers of abandoned attempts "
        f"that ended: {freed} of {attempts - 1}; busy tasks then: {busy}; ended after the "
        f"kill: {killed_freed} of {attempts}"
    )
    assert freed >= attempts - 1, (
        f"the server abandoned {attempts - 1} attempt(s) but {attempts - 1 - freed} handler(s) "
        f"still run (busy tasks: {busy})"
    )
    assert killed_freed == attempts, "a killed invocation's handler still runs"


# -- 4. graceful shutdown ---------------------------------------------------------------------

GRACEFUL = 3.0  # python -m framework serve --graceful-timeout (the default)
DRAIN_EACH = 20


def serve(app_ref: str, port: int, test_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m framework serve`` in a child process (stopped by the caller, by pid)."""
    env = {**os.environ, **child_env(test_dir), "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "framework",
                "serve",
                app_ref,
                "--bind",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                str(GRACEFUL),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_until(lambda: accepts(port) or process.poll() is not None, "the service to listen", 30)
    assert process.poll() is None, log.read_text()
    return process


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(GRACEFUL + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_sigterm_drains_invocations_in_flight_and_nothing_is_lost(
    restate_server: RestateServer, tmp_path: Path
) -> None:
    """20 invocations inside a 1 s ctx.run and 20 waiting on a 5 s durable sleep when the
    service gets SIGTERM: it stops accepting connections, lets the runs finish, exits 0 within
    the grace period; restarted, every invocation completes and every step ran once."""
    port = free_port()
    log = tmp_path / "service.log"
    processes: list[subprocess.Popen[bytes]] = []
    ingress = Ingress(restate_server)
    try:
        processes.append(serve(f"{SERVICES}:drain_app", port, tmp_path, log))
        restate_server.register(f"http://127.0.0.1:{port}")
        run_id = uuid.uuid4().hex[:8]
        slow = [f"slow-{run_id}-{i}" for i in range(DRAIN_EACH)]
        nappers = [f"nap-{run_id}-{i}" for i in range(DRAIN_EACH)]
        ids = {key: ingress.send("FaultDrain/slow", key, idempotency_key=key) for key in slow}
        ids |= {key: ingress.send("FaultDrain/napper", key, idempotency_key=key) for key in nappers}
        wait_until(
            lambda: (
                set(slow) <= set(lines_of(tmp_path, "slow-start"))
                and set(nappers) <= set(lines_of(tmp_path, "before"))
            ),
            "every slow step to start and every napper to sleep",
            timeout=10,
            interval=0.02,
        )
        mid_step = len(set(slow) - set(lines_of(tmp_path, "slow-end")))
        signalled = time.monotonic()
        processes[0].send_signal(signal.SIGTERM)
        time.sleep(0.3)
        draining = processes[0].poll() is None
        refused = not accepts(port)
        try:
            code = processes[0].wait(GRACEFUL + 5)
        except subprocess.TimeoutExpired:
            code = None
        exited = time.monotonic() - signalled
        slow_done_before_exit = len(set(lines_of(tmp_path, "slow-end")))

        processes.append(serve(f"{SERVICES}:drain_app", port, tmp_path, log))
        restarted = time.monotonic() - signalled
        ingress.wait_completed(list(ids.values()), timeout=60)
        done = time.monotonic() - signalled
        results = {key: ingress.attach(ids[key]) for key in ids}
    finally:
        ingress.close()
        for process in processes:
            stop(process)
    text = log.read_text()
    print(
        f"\nSIGTERM with {mid_step} slow steps running and {len(nappers)} durable sleeps: "
        f"{'still draining' if draining else 'already gone'} 0.3 s later (new connections "
        f"{'refused' if refused else 'ACCEPTED'}); exit code {code} after {exited:.2f} s; "
        f"slow steps finished before the exit: {slow_done_before_exit}; restarted at "
        f"{restarted:.1f} s; all {len(ids)} completed at {done:.1f} s"
    )
    assert code == 0, text
    assert exited <= GRACEFUL + 1.5, f"the drain took {exited:.1f} s (grace {GRACEFUL} s)"
    if draining:
        assert refused, "the service still accepted new connections while draining"
    assert results == {
        **{k: f"{k} slow done" for k in slow},
        **{k: f"{k} napped" for k in nappers},
    }
    count = Counter((words[0], words[1]) for words in ledger(tmp_path))
    for key in slow:
        assert count[(key, "slow-start")] == 1 and count[(key, "slow-end")] == 1, key
    for key in nappers:
        assert count[(key, "before")] == 1 and count[(key, "after")] == 1, key
    assert "Shutting down" in text, text
    assert "Traceback" not in text, text
