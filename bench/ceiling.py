"""The transport ceiling: a bare ASGI endpoint that does no SDK work at all.

``POST .../invoke/<service>/<handler>`` reads the whole request body (the journal) and
answers a canned ``OutputCommandMessage`` + ``EndMessage`` with the request's invocation
content type. Served by ``python -m framework serve bench.ceiling:app`` (the same hypercorn
settings as the SDKs), it is the best any SDK can do on this transport.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framework._protocol import EndMessage, OutputCommandMessage, encode_frame

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


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app: canned answers for invocations, 404 for anything else."""
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
    await _drain(receive)
    if "/invoke/" not in scope["path"] or not content_type.startswith(_INVOCATION_TYPE):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
    )
    await send({"type": "http.response.body", "body": CANNED_BODY})
