"""The ASGI application: routing, ``/discover``, ``/health`` and the invoke path."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import msgspec
from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router

from framework._endpoint.discovery import (
    MANIFEST_CONTENT_TYPES,
    ManifestError,
    build_manifest,
    negotiate_manifest_version,
)
from framework._endpoint.invoke import SERVER_HEADER, InvokeEndpoint
from framework._protocol import MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, ProtocolVersion
from framework._services import AnyService, Handler

_SERVER = {"x-restate-server": SERVER_HEADER.decode()}


class RestateApp:
    """An ASGI app serving a set of services to a Restate server."""

    def __init__(
        self,
        services: Iterable[AnyService],
        protocol: Literal["bidi", "request_response"] | None = None,
        identity_keys: list[str] | None = None,
        max_protocol_version: int = MAX_PROTOCOL_VERSION,
        max_message_size: int = 32 * 1024 * 1024,
    ) -> None:
        if identity_keys:
            raise NotImplementedError(
                "request identity verification (identity_keys) is not available yet"
            )
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
        invoke = InvokeEndpoint(handlers, self.max_protocol_version, max_message_size)
        self._router = Router(
            routes=[
                Route("/discover", self._discover, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
                Route("/invoke/{service}/{handler}", invoke),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._router(scope, receive, send)

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


def app(
    services: Iterable[AnyService],
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: list[str] | None = None,
    *,
    max_protocol_version: int = MAX_PROTOCOL_VERSION,
    max_message_size: int = 32 * 1024 * 1024,
) -> RestateApp:
    """The ASGI application serving ``services``; run it with hypercorn (HTTP/2, h2c).

    ``python -m framework serve module:app`` serves it with the right settings.
    """
    return RestateApp(
        services,
        protocol,
        identity_keys,
        max_protocol_version=max_protocol_version,
        max_message_size=max_message_size,
    )
