"""5,000 invocations in flight at once on ONE HTTP/2 connection to the default server.

A Restate server multiplexes every invocation it runs on a deployment over a few long-lived
h2c connections, so a burst puts thousands of open streams on one of them (the h2 library
the old server used was quadratic in a connection's open streams). This test plays the
runtime's part itself, over one connection of its own (``h2`` on an asyncio socket) to
``python -m framework serve tests.streams_app:app`` (granian), writing every protocol message
in a DATA frame of its own, as the runtime's invoker does:

1. opens ``STREAMS`` streams, each sending ``Start(known_entries=1)`` and ``Input`` and
   keeping its request open (bidirectional mode);
2. answers each ``ctx.run`` proposal with its stored result (as the runtime does) and reads
   until every stream has produced its response headers and its ``SleepCommand``: all of
   them are in flight at once, each waiting for its timer;
3. meanwhile checks that a second connection still gets answers (``GET /health`` over
   HTTP/1.1, and a whole ``Streams/quick`` invocation over h2c) within ``SIDE_BOUND_S``;
4. fires every timer (``SleepCompletionNotification``) and ends every request, then checks
   that every stream answers exactly ``Output(expected) + End``.

Reported: the time to open them all, until all were in flight, until all finished, the
client's and the server's CPU time, the side connection's latencies, and the RSS of the
server's process tree (the server and its granian worker) before, at its peak and after.

Small DATA frames matter here: the Rust h2 crate under granian (0.4.19 and later) charges
every non-final DATA frame under 256 bytes against a per-connection budget, refunded only
once the app has read the frame, and answers an exhausted budget with GOAWAY
ENHANCE_YOUR_CALM "too_many_data_frames", which ends every invocation on the connection. The
budget is half the connection's receive window, so that window decides how big a burst of
new invocations one connection survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import msgspec

from framework._dev.service_process import ServiceProcess
from framework._protocol import (
    EndMessage,
    ErrorMessage,
    FrameDecoder,
    InputCommandMessage,
    Message,
    OutputCommandMessage,
    ProposeRunCompletionMessage,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    StartMessage,
    SuspensionMessage,
    encode_frame,
)
from tests.processes import process_tree
from tests.streams_app import digest_of, expected_output

STREAMS = 5000
PROTOCOL_VERSION = 6
CONTENT_TYPE = f"application/vnd.restate.invocation.v{PROTOCOL_VERSION}"
HOLD_PATH = "/invoke/Streams/hold"
QUICK_PATH = "/invoke/Streams/quick"
OVERALL_TIMEOUT_S = 120.0
SIDE_BOUND_S = 2.0  # the side connection's answers while all streams are in flight
# Bound on the whole exchange (open, hold, finish); see TOTAL_BOUND_NOTE for the measurement.
TOTAL_BOUND_S = 30.0
TOTAL_BOUND_NOTE = "measured 1.8-2.0 s on 2 vCPUs, with a 16 MiB connection window"
# How many streams to open between two writes to the socket: the server starts on the
# first ones while the rest are still being framed, as it would under a real burst.
OPEN_BATCH = 250
# Our receive windows: far more than all the answers together, so the server never waits
# for us; h2 hands consumed bytes back (WINDOW_UPDATE) as we acknowledge them.
RECEIVE_WINDOW = 16 * 1024 * 1024
RSS_SAMPLE_INTERVAL_S = 0.1
PROBE_INTERVAL_S = 0.25
SLEEP_MS = 1000  # the handler's ctx.sleep

T = TypeVar("T")


class _H2Client(h2.connection.H2Connection):
    """h2's connection, with the count of open outbound streams kept rather than recounted.

    h2 counts them by walking every stream it holds each time one is opened (quadratic:
    about 1.1 s of client CPU to open 5,000 here), which would show up in the timings as if
    it were the server's. The count only guards opening a stream; the test opens a fixed
    number of them (checked against the server's SETTINGS_MAX_CONCURRENT_STREAMS before the
    first one) and none after the burst, so opened minus ended is exact enough.
    """

    opened_streams = 0
    finished_streams = 0

    @property
    def open_outbound_streams(self) -> int:
        return self.opened_streams - self.finished_streams


@dataclass
class _Stream:
    """One invocation's stream: what we still have to send, and what came back."""

    index: int
    stream_id: int = 0
    status: int | None = None
    content_type: str | None = None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    messages: list[Message] = field(default_factory=list)
    # One protocol message per DATA frame, as the runtime writes them (so small frames).
    outbox: deque[bytes] = field(default_factory=deque)
    end_after_outbox: bool = False
    sleep_completion_id: int | None = None
    ended: bool = False
    problem: str | None = None

    @property
    def settled_in_flight(self) -> bool:
        """In flight (waiting for its timer), or no longer able to get there."""
        return self.sleep_completion_id is not None or self.ended or self.problem is not None


class _Counter:
    """Counts streams reaching a milestone; an event once all of them have."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.done = asyncio.Event()
        self.at: float | None = None

    def add(self) -> None:
        self.count += 1
        if self.count >= self.total and not self.done.is_set():
            self.at = time.perf_counter()
            self.done.set()


class StreamsClient:
    """The runtime's side of many invocations on one h2c connection."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.h2 = _H2Client(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, _Stream] = {}
        self.pending: dict[int, _Stream] = {}  # streams with bytes waiting for send window
        self.headers_in = _Counter(count)
        self.in_flight = _Counter(count)
        self.finished = _Counter(count)
        self.settings_received = asyncio.Event()
        self.failure: str | None = None
        # A plain socket rather than asyncio streams: a failed write must not close it, so
        # that the reader still gets whatever the server said before closing (its GOAWAY).
        self._sock: socket.socket | None = None
        self._outgoing = bytearray()
        self._wake_writer = asyncio.Event()
        self._sent = asyncio.Event()
        self._sent.set()
        self._write_error: OSError | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- connection ---------------------------------------------------------------------

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(self._sock, ("127.0.0.1", self.port))
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            },
        )
        self.h2.initiate_connection()
        # The connection window only grows by WINDOW_UPDATE (SETTINGS set the streams').
        self.h2.increment_flow_control_window(RECEIVE_WINDOW - 65_535)
        self._tasks = [
            asyncio.create_task(self._read_loop()),
            asyncio.create_task(self._write_loop()),
        ]
        self._transmit()
        await asyncio.wait_for(self.settings_received.wait(), 10)
        assert self.failure is None, self.failure

    @property
    def server_max_streams(self) -> int:
        return int(self.h2.remote_settings.max_concurrent_streams)

    async def close(self) -> None:
        if self._sock is not None and self._write_error is None and self.failure is None:
            with contextlib.suppress(Exception):
                self.h2.close_connection()
                self._transmit()
                await asyncio.wait_for(self._sent.wait(), 2)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sock is not None:
            self._sock.close()

    def _transmit(self) -> None:
        """Hand what h2 has framed to the writer (never waits: the reader calls it too)."""
        data = self.h2.data_to_send()
        if data and self._write_error is None:
            self._outgoing += data
            self._sent.clear()
            self._wake_writer.set()

    async def _write_loop(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            while self._outgoing:
                data = bytes(self._outgoing)
                self._outgoing.clear()
                try:
                    await loop.sock_sendall(self._sock, data)
                except OSError as error:
                    self._write_error = error
                    self._sent.set()
                    return
            self._sent.set()

    async def drain(self) -> None:
        """Wait until everything framed so far is written to the socket."""
        self._transmit()
        await self._sent.wait()
        if self._write_error is not None:
            # Let the reader take in what the server said last (a GOAWAY says why).
            await asyncio.sleep(0.5)
            raise AssertionError(
                f"the connection broke while sending ({self._write_error!r}; "
                f"{self.progress()}); the server said: {self.failure}"
            )

    def progress(self) -> str:
        streams = self.streams.values()
        sleeping = sum(s.sleep_completion_id is not None and not s.ended for s in streams)
        return (
            f"{len(self.streams)} streams opened, {self.headers_in.count} answered with "
            f"headers, {sleeping} waiting on their sleep, {sum(s.ended for s in streams)} ended"
        )

    async def _read_loop(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._sock, 256 * 1024)
                if not data:
                    self._fail_all("the server closed the connection")
                    return
                for event in self.h2.receive_data(data):
                    self._on_event(event)
                self._flush_pending()
                self._transmit()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # reset, or an h2 protocol error: nothing more will come
            self._fail_all(f"connection failed: {type(error).__name__}: {error}")

    def _fail_all(self, reason: str) -> None:
        self.failure = self.failure or reason
        for stream in self.streams.values():
            if not stream.ended and stream.problem is None:
                self._problem(stream, reason)
        # Wake every waiter: nothing more will come on this connection.
        for counter in (self.headers_in, self.in_flight, self.finished):
            counter.done.set()
        self.settings_received.set()

    # -- events ---------------------------------------------------------------------------

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received.set()
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self.streams[event.stream_id]
            headers = dict(event.headers or [])
            stream.status = int(headers.get(b":status", b"0"))
            stream.content_type = headers.get(b"content-type", b"").decode()
            self.headers_in.add()
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams[event.stream_id]
            stream.decoder.feed(event.data or b"")
            try:
                for message, _flags in stream.decoder.decode_messages():
                    stream.messages.append(message)
                    self._on_message(stream, message)
            except Exception as error:
                self._problem(stream, f"undecodable answer: {error}")
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self._ended(self.streams[event.stream_id])
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            stream = self.streams[event.stream_id]
            self._problem(stream, f"stream reset by the server (error code {event.error_code})")
            self._ended(stream)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._fail_all(
                f"GOAWAY from the server: error code {event.error_code}, "
                f"last stream {event.last_stream_id}, {event.additional_data!r}"
            )

    def _on_message(self, stream: _Stream, message: Message) -> None:
        if isinstance(message, ProposeRunCompletionMessage):
            # As the runtime does once it stored the result: hand it back as the step's.
            self._queue(
                stream,
                encode_frame(
                    RunCompletionNotificationMessage(
                        completion_id=message.result_completion_id, value=message.value
                    )
                ),
            )
        elif isinstance(message, SleepCommandMessage):
            was_settled = stream.settled_in_flight
            stream.sleep_completion_id = message.result_completion_id
            if not was_settled:
                self.in_flight.add()
        elif isinstance(message, ErrorMessage | SuspensionMessage):
            self._problem(stream, f"unexpected {message!r}"[:400])

    def _problem(self, stream: _Stream, problem: str) -> None:
        was_settled = stream.settled_in_flight
        stream.problem = stream.problem or problem
        if not was_settled:
            self.in_flight.add()

    def _ended(self, stream: _Stream) -> None:
        if stream.ended:
            return
        was_settled = stream.settled_in_flight
        stream.ended = True
        if not was_settled:
            self.in_flight.add()
        self.h2.finished_streams += 1
        self.finished.add()

    # -- sending --------------------------------------------------------------------------

    def open(self, index: int, messages: list[bytes]) -> _Stream:
        """Open one invocation's stream: headers, then ``messages`` (encoded frames, a DATA
        frame each), the request left open."""
        self._check_alive()
        stream_id = self.h2.get_next_available_stream_id()
        stream = _Stream(index=index, stream_id=stream_id)
        self.streams[stream_id] = stream
        self.h2.opened_streams += 1
        self.h2.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", f"127.0.0.1:{self.port}".encode()),
                (b":path", HOLD_PATH.encode()),
                (b"content-type", CONTENT_TYPE.encode()),
                (b"accept", CONTENT_TYPE.encode()),
            ],
        )
        for message in messages:
            self._queue(stream, message)
        return stream

    def complete_sleep(self, stream: _Stream) -> None:
        """Fire the stream's timer and end its request."""
        self._check_alive()
        assert stream.sleep_completion_id is not None
        self._queue(
            stream,
            encode_frame(
                SleepCompletionNotificationMessage(
                    completion_id=stream.sleep_completion_id, void=True
                )
            ),
            end=True,
        )

    def _check_alive(self) -> None:
        if self.failure is not None:
            raise AssertionError(f"the connection failed ({self.progress()}): {self.failure}")

    def _queue(self, stream: _Stream, data: bytes, *, end: bool = False) -> None:
        stream.outbox.append(data)
        stream.end_after_outbox = stream.end_after_outbox or end
        self.pending[stream.stream_id] = stream
        self._flush_pending()

    def _flush_pending(self) -> None:
        """Send what the peer's windows allow, oldest first; the rest waits for them."""
        conn = self.h2
        for _ in range(len(self.pending)):
            if not self.pending or conn.outbound_flow_control_window <= 0:
                return  # nothing to send, or wait for the connection's WINDOW_UPDATE
            stream_id, stream = next(iter(self.pending.items()))
            if stream.ended:  # answered or reset already: nothing more to tell it
                del self.pending[stream_id]
                continue
            while stream.outbox:
                chunk = stream.outbox[0]
                size = min(
                    conn.local_flow_control_window(stream_id),
                    conn.max_outbound_frame_size,
                    len(chunk),
                )
                if size <= 0:
                    break
                conn.send_data(stream_id, chunk[:size])
                if size < len(chunk):
                    stream.outbox[0] = chunk[size:]
                else:
                    stream.outbox.popleft()
            if stream.outbox:
                if conn.outbound_flow_control_window <= 0:
                    return
                # Only this stream's window is spent: let the others go first.
                del self.pending[stream_id]
                self.pending[stream_id] = stream
                continue
            if stream.end_after_outbox:
                conn.end_stream(stream_id)
            del self.pending[stream_id]


def start_messages(index: int) -> list[bytes]:
    """``Start(known_entries=1)`` and ``Input({"n": index})``: a fresh invocation."""
    start = StartMessage(
        id=index.to_bytes(16, "big"),
        debug_id=f"inv_streams_{index}",
        known_entries=1,
        partial_state=True,
        random_seed=index,
    )
    return [
        encode_frame(start),
        encode_frame(InputCommandMessage(value=msgspec.json.encode({"n": index}))),
    ]


def check_stream(stream: _Stream, earliest_ms: float, latest_ms: float) -> str | None:
    """Why ``stream`` did not answer exactly as ``hold`` should, or None; its timer was set
    between ``earliest_ms`` and ``latest_ms`` (UNIX time)."""
    if stream.problem is not None:
        return stream.problem
    if stream.status != 200 or stream.content_type != CONTENT_TYPE:
        return f"HTTP {stream.status}, content-type {stream.content_type!r}"
    kinds = [type(m).__name__ for m in stream.messages]
    want = [
        "RunCommandMessage",
        "ProposeRunCompletionMessage",
        "SleepCommandMessage",
        "OutputCommandMessage",
        "EndMessage",
    ]
    if kinds != want:
        return f"messages {kinds}, expected {want}"
    run, proposal, sleep, output, _end = stream.messages
    assert isinstance(run, RunCommandMessage)
    assert isinstance(proposal, ProposeRunCompletionMessage)
    assert isinstance(sleep, SleepCommandMessage)
    assert isinstance(output, OutputCommandMessage)
    assert isinstance(_end, EndMessage)
    # Completion ids start at 1 and are handed out in command order.
    if (run.name, run.result_completion_id, proposal.result_completion_id) != ("digest", 1, 1):
        return f"run step {run!r} / {proposal!r}"
    if proposal.value is None or msgspec.json.decode(proposal.value) != digest_of(stream.index):
        return f"the step proposed {proposal.value!r}"
    if sleep.result_completion_id != 2:
        return f"sleep completion id {sleep.result_completion_id}"
    # Set for a second after the handler got there (a millisecond of rounding either way).
    if not earliest_ms + SLEEP_MS - 1 <= sleep.wake_up_time <= latest_ms + SLEEP_MS + 1:
        return (
            f"wake-up time {sleep.wake_up_time}, not within "
            f"[{earliest_ms + SLEEP_MS:.0f}, {latest_ms + SLEEP_MS:.0f}]"
        )
    if output.failure is not None or output.value is None:
        return f"output {output!r}"
    if msgspec.json.decode(output.value) != expected_output(stream.index):
        return f"output {output.value!r}, expected {expected_output(stream.index)!r}"
    if not stream.ended:
        return "the response did not end"
    return None


# -- the server's memory ---------------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples the process tree's RSS every ``RSS_SAMPLE_INTERVAL_S``; keeps the peak."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.tree = process_tree(root)
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> float:
        # The tree is walked again each time: granian's supervisor may start its worker
        # after the port already accepts connections.
        self.tree = process_tree(self.root)
        rss = sum(_status_kib(pid, "VmRSS") for pid in self.tree) / 1024
        self.peak = max(self.peak, rss)
        return rss

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(RSS_SAMPLE_INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def cpu_s(self) -> float:
        """User + system CPU time of the process tree so far."""
        ticks = 0
        for pid in process_tree(self.root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def hwm_mib(self) -> float:
        """The sum of every process's own peak (VmHWM): an upper bound of the tree's peak."""
        return sum(_status_kib(pid, "VmHWM") for pid in self.tree) / 1024


# -- the side connection ---------------------------------------------------------------------


def quick_body(n: int) -> bytes:
    start = StartMessage(
        id=(10**9 + n).to_bytes(16, "big"),
        debug_id=f"inv_streams_quick_{n}",
        known_entries=1,
        partial_state=True,
    )
    return encode_frame(start) + encode_frame(InputCommandMessage(value=msgspec.json.encode(n)))


async def timed(call: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = await call()
    return time.perf_counter() - t0, result


async def side_checks(base_url: str) -> dict[str, float]:
    """``GET /health`` on its own HTTP/1.1 connection and ``Streams/quick`` on its own h2c
    connection; their latencies. Fails unless both answer correctly."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as http1,
        httpx.AsyncClient(
            base_url=base_url, http1=False, http2=True, timeout=10, trust_env=False
        ) as h2c,
    ):
        health_s, health = await timed(lambda: http1.get("/health"))
        assert health.status_code == 200 and health.text == "OK", health
        headers = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
        quick_s, answer = await timed(
            lambda: h2c.post(QUICK_PATH, content=quick_body(41), headers=headers)
        )
        assert answer.status_code == 200, answer.text[:300]
        assert answer.http_version == "HTTP/2", answer.http_version
        decoder = FrameDecoder()
        decoder.feed(answer.content)
        messages = [m for m, _ in decoder.decode_messages()]
        assert [type(m) for m in messages] == [OutputCommandMessage, EndMessage], messages
        assert isinstance(messages[0], OutputCommandMessage)
        assert messages[0].value == b"42", messages[0]
    return {"health_s": health_s, "quick_s": quick_s}


class Prober:
    """``GET /health`` every ``PROBE_INTERVAL_S`` on its own connection, all along; the worst
    latency seen per phase (reported, not asserted: during the burst the client shares the
    machine's two cores with the server)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.phase = "idle"
        self.worst: dict[str, float] = {}
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10, trust_env=False) as c:
            while True:
                phase = self.phase
                try:
                    latency, response = await timed(lambda: c.get("/health"))
                    if response.status_code != 200:
                        self.errors.append(f"{phase}: HTTP {response.status_code}")
                    self.worst[phase] = max(self.worst.get(phase, 0.0), latency)
                except httpx.HTTPError as error:
                    self.errors.append(f"{phase}: {type(error).__name__}: {error}")
                await asyncio.sleep(PROBE_INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- the test --------------------------------------------------------------------------------


@dataclass
class Report:
    open_s: float = 0.0
    headers_s: float = 0.0
    in_flight_s: float = 0.0
    finish_s: float = 0.0
    total_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    side: dict[str, float] = field(default_factory=dict)
    probe_worst: dict[str, float] = field(default_factory=dict)
    probe_errors: list[str] = field(default_factory=list)
    rss_before: float = 0.0
    rss_in_flight: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    hwm: float = 0.0
    server_max_streams: int = 0
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        side = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.side.items())
        worst = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.probe_worst.items())
        return [
            f"{STREAMS} invocations on one h2c connection "
            f"(server SETTINGS_MAX_CONCURRENT_STREAMS {self.server_max_streams})",
            f"  all opened (HEADERS + Start/Input written): {self.open_s:.2f} s",
            f"  all response headers received:               {self.headers_s:.2f} s",
            f"  all in flight (SleepCommand on every stream): {self.in_flight_s:.2f} s",
            f"  timers fired -> all Output + End:            {self.finish_s:.2f} s",
            f"  total:                                       {self.total_s:.2f} s",
            f"  CPU: client {self.client_cpu_s:.2f} s, server tree {self.server_cpu_s:.2f} s",
            f"  side connection while all in flight: {side}",
            f"  /health probe, worst per phase: {worst}",
            f"  server tree RSS: before {self.rss_before:.0f} MiB, all in flight "
            f"{self.rss_in_flight:.0f} MiB, peak {self.rss_peak:.0f} MiB, after "
            f"{self.rss_after:.0f} MiB (sum of VmHWM {self.hwm:.0f} MiB)",
        ]


async def _reach(client: StreamsClient, counter: _Counter, what: str, deadline: float) -> None:
    """Wait until every stream has reached ``what``; fail with the progress made if not."""
    try:
        await asyncio.wait_for(counter.done.wait(), max(0.0, deadline - time.perf_counter()))
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {client.progress()}") from None
    assert client.failure is None, f"{client.failure} ({client.progress()})"


async def hold_many(service: ServiceProcess, count: int) -> Report:
    """Hold ``count`` invocations in flight on one connection, then finish them all."""
    report = Report()
    assert service.pid is not None
    deadline = time.perf_counter() + OVERALL_TIMEOUT_S - 5  # before the backstop in the test
    rss = RssSampler(service.pid)
    prober = Prober(service.url)
    client = StreamsClient(service.port, count)
    try:
        await client.connect()
        # The server's SETTINGS came: its worker serves, so this is its idle footprint.
        report.rss_before = rss.sample()
        report.server_max_streams = client.server_max_streams
        assert client.server_max_streams >= count, (
            f"the server allows {client.server_max_streams} concurrent streams per "
            f"connection, fewer than the {count} this test holds"
        )
        rss.start()
        prober.start()
        cpu0, server_cpu0 = time.process_time(), rss.cpu_s()
        earliest_ms = time.time() * 1000
        t0 = time.perf_counter()
        prober.phase = "opening"
        for index in range(count):
            client.open(index, start_messages(index))
            if index % OPEN_BATCH == OPEN_BATCH - 1:
                await client.drain()
        await client.drain()
        report.open_s = time.perf_counter() - t0
        prober.phase = "reaching in flight"
        await _reach(client, client.in_flight, "every stream in flight", deadline)
        latest_ms = time.time() * 1000
        report.in_flight_s = (client.in_flight.at or time.perf_counter()) - t0
        if client.headers_in.at is not None:
            report.headers_s = client.headers_in.at - t0
        stuck = [s for s in client.streams.values() if s.sleep_completion_id is None]
        assert not stuck, (
            f"{len(stuck)} streams did not get to their sleep, e.g. n={stuck[0].index}: "
            f"{stuck[0].problem}, status {stuck[0].status}, messages {stuck[0].messages}"
        )[:2000]
        prober.phase = "all in flight"
        report.side = await side_checks(service.url)
        report.rss_in_flight = rss.sample()
        # Still all in flight after the side checks: none ended on its own meanwhile.
        ended = sum(s.ended for s in client.streams.values())
        assert not ended, f"{ended} streams ended before their timers fired"
        t1 = time.perf_counter()
        prober.phase = "finishing"
        for done, stream in enumerate(client.streams.values(), 1):
            client.complete_sleep(stream)
            if done % OPEN_BATCH == 0:
                await client.drain()
        await client.drain()
        await _reach(client, client.finished, "every answer", deadline)
        report.finish_s = time.perf_counter() - t1
        report.total_s = time.perf_counter() - t0
        report.client_cpu_s = time.process_time() - cpu0
        report.server_cpu_s = rss.cpu_s() - server_cpu0
        for stream in client.streams.values():
            problem = check_stream(stream, earliest_ms, latest_ms)
            if problem is not None:
                report.failures.append(f"stream {stream.stream_id} (n={stream.index}): {problem}")
        prober.phase = "after"
        await asyncio.sleep(1.0)  # the worker's footprint once it let go of them all
    finally:
        await client.close()
        await prober.stop()
        await rss.stop()
    report.rss_after = rss.sample()
    report.rss_peak = rss.peak
    report.hwm = rss.hwm_mib()
    report.probe_worst = prober.worst
    report.probe_errors = prober.errors
    return report


def test_five_thousand_invocations_in_flight_on_one_connection(
    service_process: Callable[..., ServiceProcess],
) -> None:
    service = service_process("tests.streams_app:app")
    report = asyncio.run(asyncio.wait_for(hold_many(service, STREAMS), OVERALL_TIMEOUT_S))
    print("\n" + "\n".join(report.lines()))
    assert not report.failures, (
        f"{len(report.failures)} of {STREAMS} streams answered wrong:\n"
        + "\n".join(report.failures[:20])
    )
    for name, latency in report.side.items():
        assert latency < SIDE_BOUND_S, f"side connection {name}: {latency:.2f} s"
    assert not report.probe_errors, report.probe_errors[:10]
    assert report.total_s < TOTAL_BOUND_S, f"took {report.total_s:.1f} s ({TOTAL_BOUND_NOTE})"
    log = service.log_text()
    assert "Traceback" not in log, log[-4000:]
