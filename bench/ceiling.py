"""The transport ceiling: a bare ASGI endpoint that does no SDK work at all.

``POST .../invoke/<service>/<handler>`` reads the whole request body (the journal) and
answers a canned ``OutputCommandMessage`` + ``EndMessage`` with the request's invocation
content type. Served by ``FRAMEWORK_SERVER=hypercorn python -m framework serve
bench.ceiling:app`` (the same hypercorn settings as the official SDK), it is the best any SDK
can do on this transport.

Anything else (``/discover``, ``/health``) goes to ``bench.handlers:app`` on this framework,
so that a Restate server can register the ceiling (as ``${BENCH_PREFIX}Bench``...) and drive
it end to end; only invocations are canned.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framework._protocol import EndMessage, OutputCommandMessage, decode_message, encode_frame

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CANNED_VALUE = b"0"
CANNED_BODY = encode_frame(OutputCommandMessage(value=CANNED_VALUE)) + encode_frame(EndMessage())
_INVOCATION_TYPE = b"application/vnd.restate.invocation.v"


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            return


async def _read_journal(receive: Receive) -> bool:
    """Read until the StartMessage and the ``known_entries`` after it are in; whether the
    request body is still open. (A Restate server in bidirectional mode keeps it open until
    it has our answer.)"""
    buffer = b""
    needed: int | None = None
    frames = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        buffer += message.get("body", b"")
        more = bool(message.get("more_body", False))
        while len(buffer) >= 8:
            length = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + length:
                break
            if needed is None:
                start = decode_message(int.from_bytes(buffer[:2], "big"), buffer[8 : 8 + length])
                needed = 1 + int(getattr(start, "known_entries", 0) or 0)
            frames += 1
            buffer = buffer[8 + length :]
        if not more or (needed is not None and frames >= needed):
            return more


def _registration_app() -> Any:
    from bench.handlers import app as handlers_app  # the framework's (BENCH_SDK unset)

    return handlers_app


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app: canned answers for invocations, the rest to bench.handlers."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
    if "/invoke/" not in scope["path"] or not content_type.startswith(_INVOCATION_TYPE):
        await _registration_app()(scope, receive, send)
        return
    still_open = await _read_journal(receive)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
    )
    if not still_open:
        await send({"type": "http.response.body", "body": CANNED_BODY})
        return
    # Like an SDK: the answer first, the end of our stream once the server has closed its own
    # (hypercorn breaks a connection that gets request data for a finished response).
    await send({"type": "http.response.body", "body": CANNED_BODY, "more_body": True})
    await _drain(receive)
    await send({"type": "http.response.body", "body": b""})
