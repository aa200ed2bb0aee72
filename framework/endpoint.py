"""The official SDK's ``restate.endpoint``: the app serving a set of services, built in one
call (``app``) or step by step (``Endpoint``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from framework._api.services import AnyService, Service, VirtualObject, Workflow
from framework._endpoint.app import Lifespan, RestateApp
from framework._protocol import MAX_PROTOCOL_VERSION
from framework._runtime.codec import JournalValueCodec, JournalValueCodecProvider
from framework.aws_lambda import LambdaRestateApp, is_running_on_lambda


def app(
    services: Iterable[AnyService],
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: Sequence[str] | None = None,
    journal_value_codec: JournalValueCodec | JournalValueCodecProvider | None = None,
    *,
    max_protocol_version: int = MAX_PROTOCOL_VERSION,
    max_message_size: int = 32 * 1024 * 1024,
    lifespan: Lifespan | None = None,
) -> RestateApp:
    """The ASGI application serving ``services``; any ASGI server with HTTP/2 (h2c) runs it.

    ``python -m framework serve module:app`` serves it with the right settings.

    ``identity_keys``: ``publickeyv1_...`` keys of the Restate servers allowed to call; when
    given, every request but ``/health`` must carry a JWT signed by one of them (else 401).
    ``lifespan``: an async context manager factory, called with the app; entered when the
    ASGI server starts, exited when it stops (Starlette's ``lifespan=``).
    ``journal_value_codec``: a ``JournalValueCodec`` (or an async function returning one,
    awaited once at the first invocation) through which every journaled value passes, e.g.
    to encrypt it (see ``framework.entry_codec``).

    On AWS Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set), as in the official SDK, the app is also
    the function's handler: called with ``(event, context)`` it answers a Lambda event (see
    ``framework.aws_lambda``).
    """
    app_class = LambdaRestateApp if is_running_on_lambda() else RestateApp
    return app_class(
        services,
        protocol,
        identity_keys,
        max_protocol_version=max_protocol_version,
        max_message_size=max_message_size,
        lifespan=lifespan,
        journal_value_codec=journal_value_codec,
    )


class Endpoint:
    """The official SDK's builder for an app: ``Endpoint().bind(svc, obj).app()``."""

    def __init__(self) -> None:
        self.services: dict[str, AnyService] = {}
        self.protocol: Literal["bidi", "request_response"] | None = None
        self.identity_keys: list[str] = []
        self.journal_value_codec: JournalValueCodec | JournalValueCodecProvider | None = None

    def bind(self, *services: AnyService) -> Endpoint:
        """Serve these services too (their names must be unique)."""
        for service in services:
            if service.name in self.services:
                raise ValueError(f"a service named {service.name!r} is bound already")
            self.services[service.name] = service
        return self

    def streaming_protocol(self) -> Endpoint:
        """Declare bidirectional streaming (HTTP/2) in the manifest."""
        self.protocol = "bidi"
        return self

    def request_response_protocol(self) -> Endpoint:
        """Declare request/response mode in the manifest (HTTP/1.1, Lambda)."""
        self.protocol = "request_response"
        return self

    def identity_key(self, identity_key: str) -> Endpoint:
        """Accept requests signed by the Restate server with this ``publickeyv1_...`` key."""
        self.identity_keys.append(identity_key)
        return self

    def set_journal_value_codec(
        self, codec_or_provider: JournalValueCodec | JournalValueCodecProvider
    ) -> Endpoint:
        """Pass every journaled value through this codec (see ``framework.entry_codec``)."""
        self.journal_value_codec = codec_or_provider
        return self

    def app(self) -> RestateApp:
        """The ASGI app (on AWS Lambda, the function's handler)."""
        return app(
            list(self.services.values()),
            self.protocol,
            self.identity_keys or None,
            self.journal_value_codec,
        )


__all__ = [
    "Endpoint",
    "JournalValueCodec",
    "JournalValueCodecProvider",
    "RestateApp",
    "Service",
    "VirtualObject",
    "Workflow",
    "app",
]
