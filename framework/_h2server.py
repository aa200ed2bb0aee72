"""A lean ASGI server for the endpoint: HTTP/2 cleartext (prior knowledge) and HTTP/1.1.

The Restate server keeps a few HTTP/2 connections open and runs every invocation as one
bidirectional stream on them, with small frames both ways. A general-purpose server spends
most of its time per frame on machinery this traffic never uses (stream priorities, task
groups, per-event objects, header validation of a trusted peer); this one maps h2 events
to ASGI messages directly on an ``asyncio.Protocol``. HTTP/1.1 (health checks, deployments
registered in request/response mode) goes through h11, one request at a time.

It speaks ASGI 3 (``http`` and ``lifespan`` scopes) to any app, not only ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

ASGIApp = Callable[..., Awaitable[None]]
Message = MutableMapping[str, Any]

logger = logging.getLogger("framework.server")

_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Per-stream and per-connection receive windows: a whole journal usually fits, so the peer
# rarely waits for a WINDOW_UPDATE.
_WINDOW: Final = 16 * 1024 * 1024
_MAX_FRAME: Final = 1024 * 1024
_MAX_STREAMS: Final = 10_000
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}


class _Body:
    """A request body arriving in chunks: what ``receive()`` hands out, in order."""

    __slots__ = ("_chunks", "_end_pending", "_waiter", "closed", "disconnected")

    def __init__(self) -> None:
        # A list, not a deque: a body is a chunk or a few, and a deque costs 600 bytes.
        self._chunks: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False  # the request's end arrived
        self._end_pending = True  # the message saying so has not been handed out yet
        self.disconnected = False  # the stream or connection is gone

    def push(self, data: bytes) -> None:
        self._chunks.append(data)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> tuple[bytes, bool] | None:
        """The next chunk and whether more follow; None once disconnected.

        After the last chunk, it waits for the disconnect (as ASGI's ``receive`` does).
        """
        while not self._chunks and not self.disconnected and not (
            self.closed and self._end_pending
        ):
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        if self._chunks:
            data = self._chunks.pop(0)
            more = bool(self._chunks) or not self.closed
            if not more:
                self._end_pending = False
            return data, more
        if self.disconnected:
            return None
        self._end_pending = False
        return b"", False


class _Server:
    """What every connection shares: the app, the open connections, the shutdown flag."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.connections: set[_Connection] = set()
        self.closing = False

    def spawn(self, scope: dict[str, Any], receive: Any, send: Any) -> asyncio.Task[None]:
        return asyncio.ensure_future(self._run_app(scope, receive, send))

    async def _run_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the ASGI app failed on %s %s", scope["method"], scope["path"])


class _Connection(asyncio.Protocol):
    """One client connection; it becomes HTTP/2 or HTTP/1.1 with its first bytes."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.handler: _H2 | _H11 | None = None
        self._pending = b""
        self._writable: asyncio.Future[None] | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.handler is None:
            self._pending += data
            if _PREFACE.startswith(self._pending[: len(_PREFACE)]) and len(self._pending) < len(
                _PREFACE
            ):
                return  # could still be the HTTP/2 preface
            data, self._pending = self._pending, b""
            if data.startswith(_PREFACE):
                self.handler = _H2(self)
            else:
                self.handler = _H11(self)
        self.handler.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.handler is not None:
            self.handler.connection_lost()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def drain(self) -> None:
        if self._writable is not None:
            await self._writable

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Stop taking requests; let the open ones finish."""
        if self.handler is None:
            self.close()
        else:
            self.handler.shutdown()

    @property
    def busy(self) -> bool:
        return self.handler is not None and self.handler.busy

    def scope(self, http_version: str, method: str, raw_path: bytes, headers: list[Any]) -> dict[
        str, Any
    ]:
        path_part, _, query = raw_path.partition(b"?")
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": http_version,
            "method": method,
            "scheme": "http",
            "path": path_part.decode("latin-1"),
            "raw_path": path_part,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self.client,
            "server": self.local,
            "state": dict(self.server.state),
        }


class _H2Connection(h2.connection.H2Connection):
    # h2 remembers how each of the last 65,536 streams per connection closed (to answer late
    # frames precisely): with thousands of invocations per connection that is megabytes held
    # for good. Older streams are simply "closed" to h2, which answers late frames for them
    # with RST_STREAM.
    MAX_CLOSED_STREAMS = 64


class _H2Stream:
    __slots__ = ("body", "ended", "task", "window_waiter")

    def __init__(self) -> None:
        self.body = _Body()
        self.ended = False  # our response ended (or the stream was reset)
        self.task: asyncio.Task[None] | None = None
        self.window_waiter: asyncio.Future[None] | None = None


class _H2:
    """HTTP/2 on one connection: h2 events in, ASGI apps per stream, frames out."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            # The peer is a Restate server (or a health check): its headers are checked by
            # the app where it matters; validating every header of every frame is costly.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = _H2Connection(config=config)
        self.streams: dict[int, _H2Stream] = {}
        self._ended_since_sweep = 0
        self._flush_scheduled = False
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _MAX_STREAMS,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: _MAX_FRAME,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 0,
            },
        )
        # Settings given as initial values are not "acknowledged" later, so h2 would keep
        # enforcing its default 16 KiB inbound frame limit against a peer that uses ours.
        self.h2.max_inbound_frame_size = _MAX_FRAME
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW)
        self.flush()

    @property
    def busy(self) -> bool:
        return bool(self.streams)

    def flush(self) -> None:
        """Write what h2 has to send, at the end of this turn of the event loop: the frames of
        every stream that answered meanwhile go out in one write (one syscall), not one each."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_scheduled = False
        self.connection.write(self.h2.data_to_send())

    def close(self) -> None:
        self.flush_now()
        self.connection.close()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            logger.warning("HTTP/2 protocol error from %s: %s", self.connection.client, error)
            self.close()
            return
        for event in events:
            self._on_event(event)
        self.flush()
        if (not self.streams and self.h2.streams) or self._ended_since_sweep > 64 + len(
            self.streams
        ):
            self._sweep()

    def _sweep(self) -> None:
        # h2 forgets closed streams only when it counts the open ones (on each new stream):
        # after a burst, thousands of closed streams would stay referenced until the next one.
        # Counting now and then, amortized over the streams that ended (and whenever the
        # connection has nothing open), lets them go.
        self._ended_since_sweep = 0
        _ = self.h2.open_inbound_streams

    def _on_event(self, event: Any) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and event.data:
                stream.body.push(event.data)
            # Give the window back at once: a body is bounded by the app (max message size).
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.RequestReceived):
            self._start(event.stream_id, event.headers)
            if event.stream_ended is not None:
                self._end_body(event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._end_body(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            self._window_opened(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._gone(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.close()

    def _start(self, stream_id: int, raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
        method = b"GET"
        path = b"/"
        authority = None
        headers = []
        for name, value in raw_headers:
            if name.startswith(b":"):
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
            else:
                headers.append((name.lower(), value))
        if authority is not None:
            headers.append((b"host", authority))
        if self.connection.server.closing:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = _H2Stream()
        self.streams[stream_id] = stream
        scope = self.connection.scope("2", method.decode("latin-1"), path, headers)
        stream.task = self.connection.server.spawn(
            scope, self._receiver(stream), self._sender(stream_id, stream)
        )

    def _end_body(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.body.close()

    def _window_opened(self, stream_id: int) -> None:
        targets = self.streams.values() if stream_id == 0 else [self.streams.get(stream_id)]
        for stream in targets:
            waiter = stream.window_waiter if stream is not None else None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _gone(self, stream_id: int) -> None:
        self._ended_since_sweep += 1
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.ended = True
            stream.body.disconnect()
            if stream.window_waiter is not None and not stream.window_waiter.done():
                stream.window_waiter.set_result(None)

    def connection_lost(self) -> None:
        for stream_id in list(self.streams):
            self._gone(stream_id)

    def shutdown(self) -> None:
        # No GOAWAY while streams are open: the Restate server fails those it sees it for.
        # New streams are refused instead (the server retries them elsewhere or later), and
        # the connection closes once its last stream has ended.
        if not self.streams:
            self.close()

    def _finished(self, stream_id: int) -> None:
        self._ended_since_sweep += 1
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.body.disconnect()  # the response is complete: what receive() says next
        if not self.streams:
            self._sweep()  # nothing may arrive on an idle connection to trigger it later
        if not self.streams and self.connection.server.closing:
            self.close()

    def _receiver(self, stream: _H2Stream) -> Callable[[], Awaitable[Message]]:
        async def receive() -> Message:
            chunk = await stream.body.next()
            if chunk is None:
                return {"type": "http.disconnect"}
            data, more = chunk
            return {"type": "http.request", "body": data, "more_body": more}

        return receive

    def _sender(self, stream_id: int, stream: _H2Stream) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            if stream.ended:
                return
            kind = message["type"]
            if kind == "http.response.start":
                headers = [(b":status", str(message["status"]).encode())]
                headers.extend(
                    (bytes(name).lower(), bytes(value))
                    for name, value in message.get("headers", ())
                )
                self.h2.send_headers(stream_id, headers)
                self.flush()
            elif kind == "http.response.body":
                data = message.get("body", b"")
                more = message.get("more_body", False)
                if data:
                    await self._send_data(stream_id, stream, bytes(data))
                if not more and not stream.ended:
                    stream.ended = True
                    with contextlib.suppress(h2.exceptions.StreamClosedError):
                        self.h2.end_stream(stream_id)
                    self.flush()
                    self._finished(stream_id)

        return send

    async def _send_data(self, stream_id: int, stream: _H2Stream, data: bytes) -> None:
        h2conn = self.h2
        while data and not stream.ended:
            window = min(
                h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size
            )
            if window <= 0:
                stream.window_waiter = asyncio.get_running_loop().create_future()
                await stream.window_waiter
                stream.window_waiter = None
                continue
            chunk, data = data[:window], data[window:]
            try:
                h2conn.send_data(stream_id, chunk)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                stream.ended = True
                return
            self.flush()
            await self.connection.drain()


class _H11:
    """HTTP/1.1 on one connection, one request at a time (keep-alive)."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.h11 = h11.Connection(h11.SERVER)
        self.body: _Body | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing = False

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._drive()

    def _drive(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                self._bad_request(error)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._start(event)
            elif isinstance(event, h11.Data):
                if self.body is not None:
                    self.body.push(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self.body is not None:
                    self.body.close()
            elif isinstance(event, h11.ConnectionClosed):
                if self.body is not None:
                    self.body.disconnect()
                return

    def _bad_request(self, error: h11.RemoteProtocolError) -> None:
        with contextlib.suppress(h11.LocalProtocolError):
            text = f"bad request: {error}\n".encode()
            self.connection.write(
                self.h11.send(
                    h11.Response(
                        status_code=error.error_status_hint,
                        headers=[
                            ("content-type", "text/plain; charset=utf-8"),
                            ("content-length", str(len(text))),
                            ("connection", "close"),
                        ],
                    )
                )
                + self.h11.send(h11.Data(data=text))
                + self.h11.send(h11.EndOfMessage())
            )
        self.connection.close()

    def _start(self, request: h11.Request) -> None:
        headers = [(bytes(name).lower(), bytes(value)) for name, value in request.headers]
        scope = self.connection.scope(
            request.http_version.decode(),
            request.method.decode("latin-1"),
            bytes(request.target),
            headers,
        )
        self.body = _Body()
        self.task = self.connection.server.spawn(scope, self._receive, self._send)
        self.task.add_done_callback(lambda _task: self._cycle())

    async def _receive(self) -> Message:
        body = self.body
        assert body is not None
        chunk = await body.next()
        if chunk is None:
            return {"type": "http.disconnect"}
        data, more = chunk
        return {"type": "http.request", "body": data, "more_body": more}

    async def _send(self, message: Message) -> None:
        if self.h11.their_state is h11.ERROR or self.h11.our_state is h11.ERROR:
            return
        kind = message["type"]
        if kind == "http.response.start":
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            if not any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in headers):
                headers.append((b"transfer-encoding", b"chunked"))
            if self.closing:
                headers.append((b"connection", b"close"))
            self.connection.write(
                self.h11.send(h11.Response(status_code=message["status"], headers=headers))
            )
        elif kind == "http.response.body":
            data = message.get("body", b"")
            if data:
                self.connection.write(self.h11.send(h11.Data(data=bytes(data))))
            if not message.get("more_body", False):
                self.connection.write(self.h11.send(h11.EndOfMessage()))
            await self.connection.drain()

    def _cycle(self) -> None:
        """After a response: take the next request on this connection, or close it."""
        reusable = self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
        if self.body is not None:
            self.body.disconnect()
        if reusable and not (self.closing or self.connection.server.closing):
            self.h11.start_next_cycle()
            self.body = None
            self._drive()
        else:
            self.connection.close()

    def connection_lost(self) -> None:
        if self.body is not None:
            self.body.disconnect()

    def shutdown(self) -> None:
        self.closing = True
        if not self.busy:
            self.connection.close()


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


class _Lifespan:
    """The ASGI lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.supported = True

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        self._task = asyncio.ensure_future(self._run(scope))
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._from_app.get()
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the app failed to start: {reply.get('message', '')}")

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except BaseException as error:  # an app without lifespan support raises here
            self.supported = False
            if not isinstance(error, asyncio.CancelledError):
                logger.debug("the app does not handle lifespan events: %r", error)
            await self._from_app.put({"type": "lifespan.startup.complete"})
            await self._from_app.put({"type": "lifespan.shutdown.complete"})

    async def shutdown(self) -> None:
        if self._task is None or not self.supported or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        reply = await self._from_app.get()
        if reply["type"] == "lifespan.shutdown.failed":
            logger.error("the app failed to shut down: %s", reply.get("message", ""))


async def serve(
    app: ASGIApp,
    sockets: Iterable[socket.socket],
    shutdown_trigger: Callable[[], Awaitable[Any]],
    *,
    graceful_timeout: float = 3.0,
) -> None:
    """Serve ``app`` on listening ``sockets`` until ``shutdown_trigger()`` returns, then let
    open requests finish for up to ``graceful_timeout`` seconds."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {}
    lifespan = _Lifespan(app, state)
    await lifespan.startup()
    server = _Server(app, state)
    listeners = []
    for sock in sockets:
        listener = await loop.create_server(lambda: _Connection(server), sock=sock, backlog=1024)
        listeners.append(listener)
        host, port = sock.getsockname()[:2]
        logger.info("Running on http://%s:%d (CTRL + C to quit)", host, port)
    try:
        await shutdown_trigger()
    finally:
        server.closing = True
        for listener in listeners:
            listener.close()
        for connection in list(server.connections):
            connection.shutdown()
        deadline = loop.time() + graceful_timeout
        while any(c.busy for c in server.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(server.connections):
            connection.close()
        await lifespan.shutdown()
