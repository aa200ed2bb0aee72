"""Serve the app from AWS Lambda: each call of the function is one request/response exchange
with the Restate server (an API Gateway shaped payload in, one answer out).

``framework.app(...)`` returns this adapter by itself when it runs on Lambda (the
``AWS_LAMBDA_FUNCTION_NAME`` variable is set), so ``handler = app`` is the Lambda entry
point; register the function's ARN with the Restate server.

Compression: Lambda caps a payload at 6 MB, and the journal travels base64 encoded. With a
zstd library installed (Python 3.14's ``compression.zstd``, or ``pip install
'framework[zstd]'`` for the ``backports.zstd`` package on older Pythons) the handler tells the
Restate server so in the discovery manifest (``"lambdaCompression": "zstd"``, manifest v4 and
later). The server may then send request bodies zstd compressed (``content-encoding: zstd``),
and an answer larger than ``RESPONSE_COMPRESSION_THRESHOLD`` bytes is compressed when the
request says ``accept-encoding: zstd`` (the answer then carries ``content-encoding: zstd``).
Without a zstd library nothing is advertised and answers are never compressed.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import importlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Literal, Protocol, TypedDict, cast, overload

from framework._endpoint.app import RestateApp

__all__ = [
    "RESPONSE_COMPRESSION_THRESHOLD",
    "ZSTD_AVAILABLE",
    "ASGIApp",
    "HTTPDisconnectEvent",
    "HTTPRequestEvent",
    "HTTPResponseBodyEvent",
    "HTTPResponseStartEvent",
    "LambdaHandler",
    "LambdaRequest",
    "LambdaResponse",
    "LambdaRestateApp",
    "Receive",
    "ResponseCollector",
    "RestateLambdaHandler",
    "RestateLambdaRequest",
    "RestateLambdaResponse",
    "Scope",
    "Send",
    "create_scope",
    "is_lambda_compression_supported",
    "is_running_on_lambda",
    "request_to_receive",
    "wrap_asgi_as_lambda_handler",
    "zstd_compress",
    "zstd_decompress",
]

# -- the ASGI messages exchanged with the app --------------------------------------------------


class ASGIVersions(TypedDict):
    """The ``asgi`` entry of a scope."""

    spec_version: str
    version: Literal["2.0", "3.0"]


class Scope(TypedDict):
    """The HTTP scope the app is called with."""

    type: Literal["http"]
    asgi: ASGIVersions
    http_version: str
    method: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: Iterable[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    extensions: dict[str, dict[object, object]] | None


class HTTPRequestEvent(TypedDict):
    """A piece of the request body, handed to the app by ``receive``."""

    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnectEvent(TypedDict):
    """What ``receive`` hands the app once the exchange is over."""

    type: Literal["http.disconnect"]


class HTTPResponseStartEvent(TypedDict):
    """The status and headers the app sends first."""

    type: Literal["http.response.start"]
    status: int
    headers: Iterable[tuple[bytes, bytes]]
    trailers: bool


class HTTPResponseBodyEvent(TypedDict):
    """A piece of the answer's body the app sends."""

    type: Literal["http.response.body"]
    body: bytes
    more_body: bool


Receive = Callable[[], Awaitable[HTTPRequestEvent | HTTPDisconnectEvent]]
Send = Callable[[HTTPResponseStartEvent | HTTPResponseBodyEvent], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- the Lambda payloads -------------------------------------------------------------------------


class RestateLambdaRequest(TypedDict):
    """What the Restate server invokes the function with."""

    path: str
    httpMethod: str
    headers: dict[str, str]
    body: str
    isBase64Encoded: bool


class RestateLambdaResponse(TypedDict):
    """What the function answers the Restate server."""

    statusCode: int
    headers: dict[str, str]
    body: str
    isBase64Encoded: bool


RestateLambdaHandler = Callable[[RestateLambdaRequest, Any], RestateLambdaResponse]

# This module's names before it took the official SDK's: the same types.
LambdaRequest = RestateLambdaRequest
LambdaResponse = RestateLambdaResponse
LambdaHandler = RestateLambdaHandler


def is_running_on_lambda() -> bool:
    """Whether this process runs in an AWS Lambda execution environment."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


# -- zstd ------------------------------------------------------------------------------------------


class _Zstd(Protocol):
    """The two calls used from ``compression.zstd`` / ``backports.zstd`` (same API)."""

    def compress(self, data: bytes | bytearray, /) -> bytes: ...

    def decompress(self, data: bytes, /) -> bytes: ...


def _load_zstd() -> _Zstd | None:
    # The standard library has zstd from Python 3.14; backports.zstd is the same module for
    # older Pythons (the `zstd` extra). Imported by name so mypy on 3.11 does not need either.
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return cast(_Zstd, importlib.import_module(name))
        except ImportError:
            continue
    return None


_ZSTD = _load_zstd()

ZSTD_AVAILABLE: bool = _ZSTD is not None
"""Whether a zstd library is installed, so requests and answers can be compressed."""

# Lambda payloads are limited to 6 MB and the body travels base64 encoded (4/3 of its size):
# above 3 MiB an answer would come close to the limit, so it is compressed.
RESPONSE_COMPRESSION_THRESHOLD = 3 * 1024 * 1024

_ZSTD_MISSING = (
    "no zstd library is installed: on Python 3.14+ it is the standard library's "
    "compression.zstd, before that install it with `pip install 'framework[zstd]'`"
)


def is_lambda_compression_supported() -> Literal["zstd"] | None:
    """``"zstd"`` when running on Lambda with a zstd library installed, else None."""
    if is_running_on_lambda() and ZSTD_AVAILABLE:
        return "zstd"
    return None


def zstd_compress(data: bytes | bytearray) -> bytes:
    """``data`` compressed as one zstd frame; RuntimeError without a zstd library."""
    if _ZSTD is None:
        raise RuntimeError(f"cannot zstd-compress: {_ZSTD_MISSING}")
    return _ZSTD.compress(data)


def zstd_decompress(data: bytes) -> bytes:
    """The bytes zstd-compressed into ``data``; RuntimeError without a zstd library,
    ValueError when ``data`` is not zstd."""
    if _ZSTD is None:
        raise RuntimeError(
            f"received a zstd-compressed request (content-encoding: zstd) but {_ZSTD_MISSING}"
        )
    try:
        return _ZSTD.decompress(data)
    except Exception as error:  # the library's ZstdError; its type depends on the library
        raise ValueError(
            f"the request body says content-encoding: zstd but is not valid zstd data ({error})"
        ) from error


def _says_zstd(header_value: str) -> bool:
    return "zstd" in header_value.lower()


# -- from the Lambda event to the app ------------------------------------------------------------


def _headers(req: RestateLambdaRequest) -> dict[str, str]:
    return {k.lower(): v for k, v in (req.get("headers") or {}).items()}


def create_scope(req: RestateLambdaRequest) -> Scope:
    """The ASGI scope of the Lambda request ``req`` (HTTP/1.1: request/response)."""
    headers = _headers(req)
    if _says_zstd(headers.get("content-encoding", "")):
        # request_to_receive hands the app the decompressed body, so these no longer apply.
        headers.pop("content-encoding")
        headers.pop("content-length", None)
    path = req.get("path") or "/"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",  # request/response: the whole journal in, the answer out
        "method": (req.get("httpMethod") or "POST").upper(),
        "scheme": headers.get("x-forwarded-proto", "https"),
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": None,
        "server": None,
        "extensions": {},
    }


def _request_body(req: RestateLambdaRequest) -> bytes:
    raw = req.get("body") or ""
    body = base64.b64decode(raw) if req.get("isBase64Encoded") else raw.encode()
    if _says_zstd(_headers(req).get("content-encoding", "")):
        body = zstd_decompress(body)
    return body


def _receive_from(body: bytes, answered: asyncio.Event | None) -> Receive:
    sent = False

    async def receive() -> HTTPRequestEvent | HTTPDisconnectEvent:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # As any ASGI server: after the body the "client" stays until the answer is out. With
        # no answer to watch (`answered` None) it stays for as long as the app runs.
        await (answered.wait() if answered is not None else asyncio.Future())
        return {"type": "http.disconnect"}

    return receive


def request_to_receive(req: RestateLambdaRequest) -> Receive:
    """An ASGI ``receive`` handing the app the body of ``req`` (decompressed when it arrived
    zstd compressed), then waiting: the Lambda caller stays until the function returns."""
    return _receive_from(_request_body(req), None)


# -- from the app to the Lambda answer -----------------------------------------------------------


class ResponseCollector:
    """An ASGI ``send`` that gathers the app's answer, turned into the Lambda answer by
    ``to_lambda_response`` (compressed when it is large and ``accept_encoding`` allows zstd)."""

    def __init__(self, accept_encoding: str = "") -> None:
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        self.status_code = 500
        self.accept_encoding = accept_encoding
        self.finished = asyncio.Event()
        """Set once the app sent the last piece of the body."""

    async def __call__(self, message: HTTPResponseStartEvent | HTTPResponseBodyEvent) -> None:
        if message["type"] == "http.response.start":
            self.status_code = int(message["status"])
            self.headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            self.body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                self.finished.set()

    def _set_header(self, name: str, value: str) -> None:
        for key in [k for k in self.headers if k.lower() == name]:
            del self.headers[key]
        self.headers[name] = value

    def _has_header(self, name: str) -> bool:
        return any(k.lower() == name for k in self.headers)

    def to_lambda_response(self) -> RestateLambdaResponse:
        """The Lambda answer: status, headers and the base64 body."""
        body = bytes(self.body)
        if (
            ZSTD_AVAILABLE
            and len(body) > RESPONSE_COMPRESSION_THRESHOLD
            and _says_zstd(self.accept_encoding)
        ):
            body = zstd_compress(body)
            self._set_header("content-encoding", "zstd")
            if self._has_header("content-length"):
                self._set_header("content-length", str(len(body)))
        return {
            "statusCode": self.status_code,
            "headers": self.headers,
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }


_MANIFEST_TYPE = re.compile(r"application/vnd\.restate\.endpointmanifest\.v(\d+)\+json")
# The first manifest version with the lambdaCompression field.
_COMPRESSION_MANIFEST_VERSION = 4


def _advertise_compression(collector: ResponseCollector) -> None:
    """Add ``"lambdaCompression": "zstd"`` to a discovery answer that can carry it.

    Done here rather than in discovery because this adapter is what decompresses requests
    and compresses answers: served over HTTP, the same app does neither.
    """
    content_type = next(
        (v for k, v in collector.headers.items() if k.lower() == "content-type"), ""
    )
    match = _MANIFEST_TYPE.fullmatch(content_type.split(";")[0].strip())
    if collector.status_code != 200 or match is None:
        return
    if int(match.group(1)) < _COMPRESSION_MANIFEST_VERSION:
        return
    manifest = json.loads(collector.body)
    manifest["lambdaCompression"] = "zstd"
    collector.body = bytearray(json.dumps(manifest, separators=(",", ":")).encode())
    if collector._has_header("content-length"):
        collector._set_header("content-length", str(len(collector.body)))


class LambdaRestateApp(RestateApp):
    """What ``framework.app`` returns on Lambda: still the ASGI app, and also the function's
    handler (Lambda calls it with ``(event, context)``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lambda_handler = wrap_asgi_as_lambda_handler(super().__call__)

    @overload
    def __call__(self, scope: Any, receive: Any, send: Any) -> Coroutine[Any, Any, None]: ...

    @overload
    def __call__(self, scope: RestateLambdaRequest, receive: Any) -> RestateLambdaResponse: ...

    def __call__(self, scope: Any, receive: Any, send: Any = None) -> Any:
        # Lambda passes (event, context); an ASGI server (scope, receive, send).
        if send is None:
            return self._lambda_handler(scope, receive)
        return super().__call__(scope, receive, send)


def wrap_asgi_as_lambda_handler(asgi_app: ASGIApp) -> RestateLambdaHandler:
    """A Lambda handler that runs each request through ``asgi_app`` (request/response)."""
    # One loop for the life of the execution environment (Lambda reuses it between calls),
    # made on the first call and closed when the interpreter exits.
    loop: asyncio.AbstractEventLoop | None = None

    def handler(event: RestateLambdaRequest, context: Any) -> RestateLambdaResponse:
        nonlocal loop
        if loop is None:
            loop = asyncio.new_event_loop()
            atexit.register(loop.close)
        return loop.run_until_complete(_handle(asgi_app, event))

    return handler


async def _handle(asgi_app: ASGIApp, event: RestateLambdaRequest) -> RestateLambdaResponse:
    collector = ResponseCollector(_headers(event).get("accept-encoding", ""))
    receive = _receive_from(_request_body(event), collector.finished)
    await asgi_app(create_scope(event), receive, collector)
    if ZSTD_AVAILABLE:
        _advertise_compression(collector)
    return collector.to_lambda_response()
