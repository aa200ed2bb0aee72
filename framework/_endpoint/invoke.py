"""The per-invocation pump: one HTTP stream in, the handler run, journal frames out.

A raw ASGI callable, because it must own both ``receive`` (request frames keep arriving
while the handler runs, on HTTP/2) and ``send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from framework._api.dispatch import run_handler
from framework._api.services import AnyService, Handler
from framework._endpoint.asgi import Receive, Scope, Send
from framework._journal import StateMachine
from framework._protocol import (
    NotARestateRequest,
    ProtocolError,
    ProtocolVersion,
    UnsupportedProtocolVersion,
    content_type,
    parse_content_type,
)
from framework._runtime.codec import CodecSource, JournalValueCodec
from framework._runtime.invocation import Invocation

logger = logging.getLogger("framework")

SERVER_HEADER = b"framework-python/0.1.0"

# Quiet time (s) after the last invocation before a cycle collection.
_IDLE_COLLECT_DELAY = 1.0

# How long we wait for the server to close its side after we finished ours.
_INPUT_CLOSE_TIMEOUT = 60.0


async def drain_body(receive: Receive) -> None:
    """Read (and drop) the rest of the request body.

    Hypercorn's HTTP/2 stream breaks the whole connection when request DATA arrives for a
    stream whose response already ended, so we never answer before the body is in.
    """
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _plain_response(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"x-restate-server", SERVER_HEADER),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class InvokeEndpoint:
    """Serves ``POST /invoke/{service}/{handler}`` for one application."""

    def __init__(
        self,
        handlers: dict[tuple[str, str], Handler],
        max_protocol_version: ProtocolVersion,
        max_message_size: int,
        codec: CodecSource | None = None,
        services: dict[str, AnyService] | None = None,
    ) -> None:
        self.handlers = handlers
        self.services = services or {}
        self.max_protocol_version = max_protocol_version
        self.max_message_size = max_message_size
        self.codec = codec
        self._active = 0  # invocations being served now
        self._collect_scheduled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = scope.get("path_params", {})
        handler = self.handlers.get((params.get("service", ""), params.get("handler", "")))
        version: ProtocolVersion | None = None
        status, problem = 0, ""
        if handler is None:
            status, problem = (
                404,
                f"no handler {params.get('service')}/{params.get('handler')} here",
            )
        elif scope["method"] != "POST":
            status, problem = 405, "invocations are POST requests"
        else:
            try:
                version = parse_content_type(headers.get("content-type"))
            except (NotARestateRequest, UnsupportedProtocolVersion) as error:
                status, problem = 415, error.message
            else:
                if version > self.max_protocol_version:
                    status, problem = (
                        415,
                        (
                            f"protocol v{int(version)} is disabled on this endpoint "
                            f"(it speaks up to v{int(self.max_protocol_version)})"
                        ),
                    )
        codec: JournalValueCodec | None = None
        if not status and self.codec is not None:
            try:
                codec = await self.codec.get()
            except Exception as error:
                logger.exception("the journal_value_codec provider failed")
                status, problem = 500, f"the journal value codec is not available: {error!r}"
        if status or handler is None or version is None:
            await drain_body(receive)
            await _plain_response(send, status, problem)
            return
        service = self.services.get(handler.service_name)
        explicit_recovery = handler.explicit_recovery or bool(
            service is not None and service.explicit_recovery
        )
        self._active += 1
        try:
            await _Pump(
                handler,
                version,
                headers,
                scope,
                receive,
                send,
                self.max_message_size,
                codec,
                explicit_recovery,
            ).run()
        finally:
            self._active -= 1
            if not self._active and not self._collect_scheduled:
                self._collect_scheduled = True
                asyncio.get_running_loop().call_later(_IDLE_COLLECT_DELAY, self._collect_if_idle)

    def _collect_if_idle(self) -> None:
        """Once no invocation runs, collect what ended ones left in reference cycles (task
        and exception chains): an idle process allocates nothing, so the cycle collector
        would not run and a burst's memory would stay (tests/test_abuse.py measures it)."""
        self._collect_scheduled = False
        if not self._active:
            gc.collect()


class _Pump:
    """Moves bytes between one HTTP stream and one invocation's state machine."""

    def __init__(
        self,
        handler: Handler,
        version: ProtocolVersion,
        headers: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        max_message_size: int,
        codec: JournalValueCodec | None = None,
        explicit_recovery: bool = False,
    ) -> None:
        self.handler = handler
        self.codec = codec
        self.version = version
        self.headers = headers
        self.receive = receive
        self.send = send
        self.machine = StateMachine(version, max_message_size, explicit_recovery=explicit_recovery)
        # HTTP/1.1 can only do request/response: the whole journal first, then our answer.
        self.bidirectional = scope.get("http_version") == "2"
        self.body_done = False
        self.disconnected = False
        self.attempt_over = False  # the handler's attempt ended (the reader may stop)

    async def _read_chunk(self) -> None:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self.body_done = True
            self.disconnected = True
            return
        body = message.get("body", b"")
        # Marked before the bytes are fed: if they are malformed, the body is still over
        # (and must not be waited for again).
        if not message.get("more_body", False):
            self.body_done = True
        if body:
            self.machine.receive(body)
        if self.body_done:
            self.machine.close_input()

    async def run(self) -> None:
        machine = self.machine
        try:
            while not self.body_done and (not machine.ready or not self.bidirectional):
                await self._read_chunk()
        except ProtocolError as error:
            logger.warning(
                "refused an invocation of %s/%s: %s",
                self.handler.service_name,
                self.handler.name,
                error,
            )
            await self._start_response()
            machine.fail(error.code, str(error))
            await self._send_body(machine.take_output())
            # Answer in full only once the server has finished its side (see drain_body).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._discard_input(), _INPUT_CLOSE_TIMEOUT)
            if not self.disconnected:
                await self._finish(b"")
            return
        if self.disconnected:
            return
        await self._start_response()
        invocation = Invocation(
            machine,
            self._send_body,
            f"{self.handler.service_name}/{self.handler.name}",
            self.codec,
        )
        if self.body_done:
            invocation.on_input()
        reader = asyncio.ensure_future(self._read_loop(invocation))
        try:
            await invocation.run(
                lambda: run_handler(self.handler, invocation, self.headers, self.codec)
            )
        finally:
            self.attempt_over = True
            if self.body_done:
                reader.cancel()  # it only watches for a disconnect now
            else:
                try:
                    await asyncio.wait_for(reader, _INPUT_CLOSE_TIMEOUT)
                except (TimeoutError, asyncio.CancelledError):
                    reader.cancel()
        if not self.disconnected:
            await self._finish(b"")

    async def _read_loop(self, invocation: Invocation) -> None:
        try:
            while not self.body_done:
                await self._read_chunk()
                invocation.on_input()
        except ProtocolError as error:
            invocation.on_input_error(error)
            # Keep draining so the stream can close in order.
            with contextlib.suppress(Exception):
                await self._discard_input()
        # The request body is in, but the server can still give up on the attempt (reset the
        # stream, drop the connection): a handler stuck outside any durable step must not
        # outlive it.
        if (
            not self.disconnected
            and not self.attempt_over
            and (await self.receive())["type"] == "http.disconnect"
        ):
            self.disconnected = True
        if self.disconnected:
            invocation.on_input_error(ProtocolError("the server closed the connection"))

    async def _discard_input(self) -> None:
        """Read and drop the rest of the request body (after a protocol error)."""
        while not self.body_done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.body_done = True
            elif not message.get("more_body", False):
                self.body_done = True

    async def _start_response(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type(self.version).encode()),
                    (b"x-restate-server", SERVER_HEADER),
                ],
            }
        )

    async def _send_body(self, data: bytes) -> None:
        if not self.disconnected:
            await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def _finish(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})
