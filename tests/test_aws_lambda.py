"""The Lambda adapter: the Restate server's request/response payloads in, answers out."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec

import framework
from framework import Context
from framework._protocol import (
    EndMessage,
    FrameDecoder,
    InputCommandMessage,
    OutputCommandMessage,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    StartMessage,
    decode_message,
    encode_frame,
)
from framework.aws_lambda import LambdaRequest, wrap_asgi_as_lambda_handler

svc = framework.Service("Lambda")


@svc.handler()
async def greet(ctx: Context, name: str) -> str:
    stamp = await ctx.run_typed("stamp", lambda: "fresh")
    return f"hello {name} ({stamp})"


handler = wrap_asgi_as_lambda_handler(framework.app([svc]))


def _event(path: str, method: str, headers: dict[str, str], body: bytes) -> LambdaRequest:
    return {"path": path, "httpMethod": method, "headers": headers,
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def test_discovery_through_lambda_is_request_response() -> None:
    accept = "application/vnd.restate.endpointmanifest.v3+json"
    response = handler(_event("/discover", "GET", {"Accept": accept}, b""), None)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == accept
    manifest = json.loads(base64.b64decode(response["body"]))
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    assert manifest["services"][0]["name"] == "Lambda"


def test_invocation_through_lambda_replays_and_answers() -> None:
    content_type = "application/vnd.restate.invocation.v6"
    entries: list[Any] = [
        InputCommandMessage(value=msgspec.json.encode("Ann")),
        RunCommandMessage(result_completion_id=1, name="stamp"),
        RunCompletionNotificationMessage(completion_id=1, value=msgspec.json.encode("journal")),
    ]
    start = StartMessage(id=b"\x07" * 16, debug_id="inv_lambda", known_entries=len(entries))
    body = b"".join(encode_frame(m) for m in (start, *entries))
    # The payload is invoked twice, as Lambda reuses an execution environment.
    for _ in range(2):
        response = handler(_event("/invoke/Lambda/greet", "POST",
                                  {"content-type": content_type, "accept": content_type}, body),
                           None)
        assert response["statusCode"] == 200 and response["isBase64Encoded"]
        decoder = FrameDecoder()
        decoder.feed(base64.b64decode(response["body"]))
        frames = []
        while (frame := decoder.next_frame()) is not None:
            frames.append(decode_message(frame[0], frame[2]))
        assert frames == [OutputCommandMessage(value=msgspec.json.encode("hello Ann (journal)")),
                          EndMessage()]


def test_app_is_the_lambda_handler_on_lambda(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "greeter")
    on_lambda: Any = framework.app([svc])
    accept = "application/vnd.restate.endpointmanifest.v3+json"
    response = on_lambda(_event("/discover", "GET", {"accept": accept}, b""), None)
    assert response["statusCode"] == 200
    assert json.loads(base64.b64decode(response["body"]))["services"][0]["name"] == "Lambda"
