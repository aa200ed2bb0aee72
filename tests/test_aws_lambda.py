"""The Lambda adapter: the Restate server's request/response payloads in, answers out, with
zstd compression as the official SDK does it on the wire."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

import framework
from framework import Context, aws_lambda
from framework._protocol import EndMessage, InputCommandMessage, OutputCommandMessage
from framework.aws_lambda import (
    RESPONSE_COMPRESSION_THRESHOLD,
    LambdaRequest,
    RestateLambdaRequest,
    wrap_asgi_as_lambda_handler,
)
from tests.journals import decode_frames, journal, run_entries

svc = framework.Service("Lambda")


@svc.handler()
async def greet(ctx: Context, name: str) -> str:
    stamp = await ctx.run_typed("stamp", lambda: "fresh")
    return f"hello {name} ({stamp})"


@svc.handler()
async def big(ctx: Context, size: int) -> str:
    # The journal's step decides the filler, so the test can tell a replay from a fresh run.
    filler = await ctx.run_typed("filler", lambda: "fresh")
    return (filler * (size // len(filler) + 1))[:size]


handler = wrap_asgi_as_lambda_handler(framework.app([svc]))

INVOCATION = "application/vnd.restate.invocation.v6"
MANIFEST_V3 = "application/vnd.restate.endpointmanifest.v3+json"
MANIFEST_V4 = "application/vnd.restate.endpointmanifest.v4+json"


def _event(path: str, method: str, headers: dict[str, str], body: bytes) -> LambdaRequest:
    return {
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def _journal(argument: Any, step: str, step_value: Any) -> bytes:
    """Input(argument), then the handler's one step already run, with ``step_value``."""
    return journal(
        InputCommandMessage(value=msgspec.json.encode(argument)),
        *run_entries(1, step, msgspec.json.encode(step_value)),
    )


def test_discovery_through_lambda_is_request_response() -> None:
    response = handler(_event("/discover", "GET", {"Accept": MANIFEST_V3}, b""), None)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == MANIFEST_V3
    manifest = json.loads(base64.b64decode(response["body"]))
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    assert manifest["services"][0]["name"] == "Lambda"
    # Manifest v3 has no field for it.
    assert "lambdaCompression" not in manifest


def test_invocation_through_lambda_replays_and_answers() -> None:
    body = _journal("Ann", "stamp", "journal")
    # The payload is invoked twice, as Lambda reuses an execution environment.
    for _ in range(2):
        event = _event(
            "/invoke/Lambda/greet",
            "POST",
            {"content-type": INVOCATION, "accept": INVOCATION},
            body,
        )
        response = handler(event, None)
        assert response["statusCode"] == 200 and response["isBase64Encoded"]
        assert "content-encoding" not in response["headers"]
        assert decode_frames(base64.b64decode(response["body"])) == [
            OutputCommandMessage(value=msgspec.json.encode("hello Ann (journal)")),
            EndMessage(),
        ]


def test_app_is_the_lambda_handler_on_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "greeter")
    on_lambda = framework.app([svc])
    assert isinstance(on_lambda, framework.RestateApp)  # still an ASGI app, for any server
    # app() is typed as returning a RestateApp; on Lambda it is the Lambda handler too.
    response = cast(aws_lambda.LambdaRestateApp, on_lambda)(
        _event("/discover", "GET", {"accept": MANIFEST_V3}, b""), None
    )
    assert response["statusCode"] == 200
    assert json.loads(base64.b64decode(response["body"]))["services"][0]["name"] == "Lambda"
    assert aws_lambda.is_lambda_compression_supported() == "zstd"


# -- zstd -----------------------------------------------------------------------------------------


def test_zstd_is_advertised_in_the_v4_manifest() -> None:
    assert aws_lambda.ZSTD_AVAILABLE, "the test extra installs backports.zstd"
    response = handler(_event("/discover", "GET", {"accept": MANIFEST_V4}, b""), None)
    assert response["statusCode"] == 200
    manifest = json.loads(base64.b64decode(response["body"]))
    assert manifest["lambdaCompression"] == "zstd"
    assert manifest["services"][0]["name"] == "Lambda"
    length = response["headers"].get("content-length")
    assert length is None or int(length) == len(base64.b64decode(response["body"]))


def test_a_compressed_journal_in_and_a_large_answer_compressed_out() -> None:
    size = RESPONSE_COMPRESSION_THRESHOLD + 1024 * 1024
    journal = _journal(size, "filler", "journal")
    compressed = aws_lambda.zstd_compress(journal)
    assert compressed != journal
    headers = {
        "content-type": INVOCATION,
        "accept": INVOCATION,
        "content-encoding": "zstd",
        "accept-encoding": "zstd",
    }
    response = handler(_event("/invoke/Lambda/big", "POST", headers, compressed), None)
    assert response["statusCode"] == 200, base64.b64decode(response["body"])[:500]
    assert response["headers"]["content-encoding"] == "zstd"
    raw = base64.b64decode(response["body"])
    assert len(raw) < RESPONSE_COMPRESSION_THRESHOLD // 10, "the answer was not compressed"
    expected = ("journal" * (size // 7 + 1))[:size]
    assert decode_frames(aws_lambda.zstd_decompress(raw)) == [
        OutputCommandMessage(value=msgspec.json.encode(expected)),
        EndMessage(),
    ]
    # The same answer to a request that does not accept zstd goes out as it is.
    del headers["accept-encoding"]
    plain = handler(_event("/invoke/Lambda/big", "POST", headers, compressed), None)
    assert "content-encoding" not in plain["headers"]
    assert decode_frames(base64.b64decode(plain["body"]))[0] == OutputCommandMessage(
        value=msgspec.json.encode(expected)
    )


def test_a_small_answer_is_not_compressed() -> None:
    headers = {"content-type": INVOCATION, "accept": INVOCATION, "accept-encoding": "zstd"}
    body = _journal(10, "filler", "journal")
    response = handler(_event("/invoke/Lambda/big", "POST", headers, body), None)
    assert "content-encoding" not in response["headers"]
    assert decode_frames(base64.b64decode(response["body"]))[0] == OutputCommandMessage(
        value=msgspec.json.encode("journaljou")
    )


def test_a_body_that_is_not_zstd_fails_clearly() -> None:
    headers = {"content-type": INVOCATION, "content-encoding": "zstd"}
    with pytest.raises(ValueError, match="not valid zstd data"):
        handler(_event("/invoke/Lambda/greet", "POST", headers, b"not zstd"), None)


NO_ZSTD = """
import base64, json, os, sys
import backports.zstd
journal = base64.b64decode(sys.argv[1])
compressed = backports.zstd.compress(journal)
# From here on neither zstd module can be imported, as on a machine without them.
for name in [n for n in sys.modules if n.startswith("backports.zstd")]:
    del sys.modules[name]
sys.modules["backports.zstd"] = None
sys.modules["compression.zstd"] = None
os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "no-zstd"

import framework
from framework import aws_lambda
from tests.test_aws_lambda import INVOCATION, MANIFEST_V4, _event, svc

handler = framework.app([svc])  # the Lambda handler itself, AWS_LAMBDA_FUNCTION_NAME being set
report = {"available": aws_lambda.ZSTD_AVAILABLE,
          "supported": aws_lambda.is_lambda_compression_supported()}
answer = handler(_event("/discover", "GET", {"accept": MANIFEST_V4}, b""), None)
report["manifest"] = json.loads(base64.b64decode(answer["body"]))
headers = {"content-type": INVOCATION, "accept": INVOCATION, "accept-encoding": "zstd"}
big = handler(_event("/invoke/Lambda/big", "POST", headers, journal), None)
report["big_headers"] = big["headers"]
report["big_size"] = len(base64.b64decode(big["body"]))
try:
    handler(_event("/invoke/Lambda/big", "POST", dict(headers, **{"content-encoding": "zstd"}),
                   compressed), None)
except RuntimeError as error:
    report["error"] = str(error)
print(json.dumps(report))
"""


def test_without_a_zstd_library_nothing_is_advertised_or_compressed() -> None:
    size = RESPONSE_COMPRESSION_THRESHOLD + 1024
    journal = base64.b64encode(_journal(size, "filler", "journal")).decode()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_ZSTD), journal],
        cwd=Path(__file__).resolve().parents[1],  # where `tests.test_aws_lambda` imports from
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["available"] is False
    assert report["supported"] is None
    assert "lambdaCompression" not in report["manifest"]
    assert report["manifest"]["services"][0]["name"] == "Lambda"
    assert "content-encoding" not in report["big_headers"]
    assert report["big_size"] > size
    assert "pip install 'framework[zstd]'" in report["error"]


# -- the official SDK's names ---------------------------------------------------------------------

# Each public callable of restate.aws_lambda 1.2.0 and its parameters.
OFFICIAL_SIGNATURES = {
    "create_scope": ["req"],
    "request_to_receive": ["req"],
    "is_lambda_compression_supported": [],
    "is_running_on_lambda": [],
    "wrap_asgi_as_lambda_handler": ["asgi_app"],
    "zstd_compress": ["data"],
    "zstd_decompress": ["data"],
    "ResponseCollector": ["accept_encoding"],
}
OFFICIAL_NAMES = [
    "ASGIApp",
    "HTTPRequestEvent",
    "HTTPResponseBodyEvent",
    "HTTPResponseStartEvent",
    "RESPONSE_COMPRESSION_THRESHOLD",
    "Receive",
    "RestateLambdaHandler",
    "RestateLambdaRequest",
    "RestateLambdaResponse",
    "Scope",
    "ZSTD_AVAILABLE",
]


def test_the_official_names_and_signatures() -> None:
    for name in OFFICIAL_NAMES:
        assert hasattr(aws_lambda, name), name
    for name, parameters in OFFICIAL_SIGNATURES.items():
        assert list(inspect.signature(getattr(aws_lambda, name)).parameters) == parameters, name
    assert aws_lambda.LambdaRequest is aws_lambda.RestateLambdaRequest
    assert aws_lambda.LambdaResponse is aws_lambda.RestateLambdaResponse
    assert RESPONSE_COMPRESSION_THRESHOLD == 3 * 1024 * 1024


@pytest.mark.anyio
async def test_the_building_blocks_by_hand() -> None:
    journal = _journal("Bo", "stamp", "journal")
    event: RestateLambdaRequest = _event(
        "/invoke/Lambda/greet",
        "POST",
        {"Content-Type": INVOCATION, "Content-Encoding": "zstd", "X-Forwarded-Proto": "http"},
        aws_lambda.zstd_compress(journal),
    )
    scope = aws_lambda.create_scope(event)
    assert scope["scheme"] == "http" and scope["http_version"] == "1.1"
    assert (b"content-encoding", b"zstd") not in list(scope["headers"])
    first = await aws_lambda.request_to_receive(event)()
    assert first == {"type": "http.request", "body": journal, "more_body": False}
    collector = aws_lambda.ResponseCollector()
    app = framework.app([svc])
    await asyncio.wait_for(app(scope, aws_lambda.request_to_receive(event), collector), 10)
    assert collector.finished.is_set()
    answer = collector.to_lambda_response()
    assert answer["statusCode"] == 200
    assert decode_frames(base64.b64decode(answer["body"]))[0] == OutputCommandMessage(
        value=msgspec.json.encode("hello Bo (journal)")
    )
