"""The ASGI application: routing, ``/discover``, ``/health``, the invoke path, request
identity checks and the ASGI lifespan."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import msgspec
from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from framework._api.services import AnyService, Handler
from framework._endpoint.discovery import (
    MANIFEST_CONTENT_TYPES,
    ManifestError,
    build_manifest,
    negotiate_manifest_version,
)
from framework._endpoint.identity import IdentityError, IdentityVerifier
from framework._endpoint.invoke import SERVER_HEADER, InvokeEndpoint, drain_body
from framework._protocol import MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, ProtocolVersion
from framework._runtime.codec import CodecSource, JournalValueCodec, JournalValueCodecProvider

logger = logging.getLogger("framework")

_SERVER = {"x-restate-server": SERVER_HEADER.decode()}
# Paths served without a request identity check (liveness probes).
_OPEN_PATHS = frozenset({"/health"})

Lifespan = Callable[["RestateApp"], AbstractAsyncContextManager[Mapping[str, Any] | None]]
"""Starlette-style: called with the app, entered on startup, exited on shutdown."""


def route_path(scope: Mapping[str, Any]) -> str:
    """The request path relative to where the app is mounted (``scope["root_path"]``).

    This is the path the Restate server signs as the JWT audience: the deployment URI
    ``http://host:port/restate`` gets ``/restate/invoke/S/h`` requests for audience
    ``/invoke/S/h``.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def _is_invoke_path(path: str) -> bool:
    """``/invoke/{service}/{handler}``: the one route whose handler reads the body itself."""
    parts = path.split("/")
    return len(parts) == 4 and parts[1] == "invoke" and bool(parts[2]) and bool(parts[3])


class RestateApp:
    """An ASGI app serving a set of services to a Restate server."""

    def __init__(
        self,
        services: Iterable[AnyService],
        protocol: Literal["bidi", "request_response"] | None = None,
        identity_keys: Sequence[str] | None = None,
        max_protocol_version: int = MAX_PROTOCOL_VERSION,
        max_message_size: int = 32 * 1024 * 1024,
        lifespan: Lifespan | None = None,
        journal_value_codec: JournalValueCodec | JournalValueCodecProvider | None = None,
    ) -> None:
        self.identity: IdentityVerifier | None = None
        if identity_keys is not None and (isinstance(identity_keys, str) or identity_keys):
            self.identity = IdentityVerifier(identity_keys)
        if lifespan is not None and not callable(lifespan):
            raise ValueError(
                "lifespan must be a callable taking the app and returning an async context "
                "manager (e.g. an @asynccontextmanager function)"
            )
        self.lifespan = lifespan
        self.services: dict[str, AnyService] = {}
        handlers: dict[tuple[str, str], Handler] = {}
        for service in services:
            if service.name in self.services:
                raise ValueError(f"two services are named {service.name!r}")
            if not service.handlers:
                raise ValueError(f"service {service.name!r} has no handlers")
            self.services[service.name] = service
            for handler in service.handlers.values():
                handlers[(service.name, handler.name)] = handler
        if not MIN_PROTOCOL_VERSION <= max_protocol_version <= MAX_PROTOCOL_VERSION:
            raise ValueError(
                f"max_protocol_version must be within {int(MIN_PROTOCOL_VERSION)}.."
                f"{int(MAX_PROTOCOL_VERSION)}, not {max_protocol_version}"
            )
        self.protocol = protocol
        self.max_protocol_version = ProtocolVersion(max_protocol_version)
        codec = CodecSource(journal_value_codec) if journal_value_codec is not None else None
        self.codec = codec
        self.max_message_size = max_message_size
        invoke = InvokeEndpoint(
            handlers, self.max_protocol_version, max_message_size, codec, self.services
        )
        self._router = Router(
            routes=[
                Route("/discover", self._discover, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
                Route("/invoke/{service}/{handler}", invoke),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "http" and self.identity is not None:
            path = route_path(scope)
            if path not in _OPEN_PATHS:
                try:
                    self.identity.verify(scope["headers"], path)
                except IdentityError as error:
                    await self._unauthorized(scope, receive, send, str(error))
                    return
        if scope["type"] == "http" and not _is_invoke_path(route_path(scope)):
            await self._answer_after_body(scope, receive, send)
            return
        await self._router(scope, receive, send)

    async def _answer_after_body(self, scope: Any, receive: Any, send: Any) -> None:
        """Route a request whose answer must wait for its body (see ``drain_body``).

        Starlette's routes (404, 405, discovery, health) answer without reading a body;
        this holds the answer back until the body has been read and dropped.
        """
        body_done = False

        async def tracked_receive() -> Any:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_after_body(message: Any) -> None:
            nonlocal body_done
            if not body_done and message["type"] == "http.response.start":
                await drain_body(receive)
                body_done = True
            await send(message)

        await self._router(scope, tracked_receive, send_after_body)

    async def _unauthorized(self, scope: Any, receive: Any, send: Any, problem: str) -> None:
        logger.warning("refused %s %s: %s", scope["method"], scope["path"], problem)
        await drain_body(receive)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"x-restate-server", SERVER_HEADER),
                ],
            }
        )
        await send({"type": "http.response.body", "body": f"unauthorized: {problem}".encode()})

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI lifespan protocol, running ``lifespan`` (if any) around the app's life."""
        started = False
        try:
            await receive()  # lifespan.startup
            if self.lifespan is None:
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
            else:
                async with self.lifespan(self) as state:
                    if state is not None and isinstance(scope.get("state"), dict):
                        scope["state"].update(state)  # copied into every request's scope
                    await send({"type": "lifespan.startup.complete"})
                    started = True
                    await receive()  # lifespan.shutdown
        except Exception:
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})

    async def _health(self, request: HttpRequest) -> Response:
        return PlainTextResponse("OK", headers=_SERVER)

    async def _discover(self, request: HttpRequest) -> Response:
        version = negotiate_manifest_version(request.headers.get("accept"))
        if version is None:
            offered = ", ".join(MANIFEST_CONTENT_TYPES.values())
            return PlainTextResponse(
                f"unsupported discovery request (accept: {request.headers.get('accept')!r}); "
                f"this endpoint serves {offered}. Register it with a Restate server >= 1.2.",
                status_code=415,
                headers=_SERVER,
            )
        mode = self.protocol
        if mode is None:
            # The transport decides: HTTP/2 streams both ways, HTTP/1.1 cannot.
            mode = "bidi" if request.scope.get("http_version") == "2" else "request_response"
        try:
            manifest = build_manifest(
                list(self.services.values()),
                version,
                protocol_mode="BIDI_STREAM" if mode == "bidi" else "REQUEST_RESPONSE",
                min_protocol_version=int(MIN_PROTOCOL_VERSION),
                max_protocol_version=int(self.max_protocol_version),
            )
        except ManifestError as error:
            return PlainTextResponse(str(error), status_code=500, headers=_SERVER)
        return Response(
            msgspec.json.encode(manifest),
            media_type=MANIFEST_CONTENT_TYPES[version],
            headers=_SERVER,
        )
