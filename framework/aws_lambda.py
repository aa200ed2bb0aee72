"""Serve the app from AWS Lambda: the Restate server invokes the function with a
request/response payload (API Gateway shaped), one invocation attempt per call.

``framework.app(...)`` returns this adapter by itself when it runs on Lambda (the
``AWS_LAMBDA_FUNCTION_NAME`` variable is set), so ``handler = app`` is the Lambda entry
point; register the function's ARN with the Restate server.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable, MutableMapping
from typing import Any, TypedDict

ASGIApp = Callable[..., Any]


class LambdaRequest(TypedDict):
    """What the Restate server sends to the function."""

    path: str
    httpMethod: str
    headers: dict[str, str]
    body: str
    isBase64Encoded: bool


class LambdaResponse(TypedDict):
    """What the function answers."""

    statusCode: int
    headers: dict[str, str]
    body: str
    isBase64Encoded: bool


LambdaHandler = Callable[[LambdaRequest, Any], LambdaResponse]


def is_running_on_lambda() -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


def wrap_asgi_as_lambda_handler(asgi_app: ASGIApp) -> LambdaHandler:
    """A Lambda handler that runs each request through ``asgi_app`` (request/response)."""
    # One loop for the life of the execution environment: Lambda reuses it between calls.
    loop = asyncio.new_event_loop()

    def handler(event: LambdaRequest, context: Any) -> LambdaResponse:
        return loop.run_until_complete(_handle(asgi_app, event))

    return handler


async def _handle(asgi_app: ASGIApp, event: LambdaRequest) -> LambdaResponse:
    raw_body = event.get("body") or ""
    body = base64.b64decode(raw_body) if event.get("isBase64Encoded") else raw_body.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    path = event.get("path") or "/"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",  # request/response: the whole journal in, the answer out
        "method": (event.get("httpMethod") or "POST").upper(),
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": None,
        "server": None,
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 500
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        # As any ASGI server: after the body, the "client" is there until the answer is out.
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            for key, value in message.get("headers", []):
                response_headers[key.decode("latin-1")] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answered.set()

    await asgi_app(scope, receive, send)
    return {
        "statusCode": status,
        "headers": response_headers,
        "body": base64.b64encode(b"".join(chunks)).decode(),
        "isBase64Encoded": True,
    }


__all__ = [
    "LambdaHandler",
    "LambdaRequest",
    "LambdaResponse",
    "is_running_on_lambda",
    "wrap_asgi_as_lambda_handler",
]
