"""Security: with identity keys, nothing but correctly signed requests reaches user code,
and secrets (tokens, inputs, header values) stay out of answers and logs.

tests/test_identity.py checks the verifier's verdicts one by one; here every handler call is
recorded in a ledger (tests/bad_input_services.py), so a rejected request is seen to leave
it untouched, in-process and against a ``python -m framework serve`` child process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import base58
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from framework import app as make_app
from framework._dev.service_process import ServiceProcess
from framework._protocol import (
    EndMessage,
    ErrorMessage,
    Header,
    InputCommandMessage,
    OutputCommandMessage,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    StartMessage,
    encode_frame,
)
from tests import bad_input_services
from tests.bad_input_services import LEDGER, SERVICES
from tests.journals import ASGIApp, call_asgi, decode_frames, invocation_headers, journal, json

ROOT = Path(__file__).resolve().parents[1]
CONTENT_TYPE = "application/vnd.restate.invocation.v6"
ECHO = "/invoke/BadInput/echo"


def identity_key(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "publickeyv1_" + base58.b58encode(raw).decode()


TRUSTED = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
KEY = identity_key(TRUSTED)


def token(
    private: Ed25519PrivateKey = TRUSTED,
    audience: str = ECHO,
    *,
    issued: float | None = None,
    kid: str | None = None,
) -> str:
    """Shaped like restate-server 1.7's tokens: nbf = iat - 60 s, exp = iat + 60 s."""
    iat = int(time.time() if issued is None else issued)
    claims = {"aud": audience, "exp": iat + 60, "iat": iat, "nbf": iat - 60}
    headers = {"typ": "JWT", "kid": identity_key(private) if kid is None else kid}
    return jwt.encode(claims, private, algorithm="EdDSA", headers=headers)


def signed(jwt_token: str) -> dict[str, str]:
    return {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": jwt_token}


GOOD = journal(InputCommandMessage(value=json("hello")))


def call(
    asgi: ASGIApp, path: str, headers: dict[str, str], body: bytes = GOOD
) -> tuple[int, bytes]:
    """POST ``body`` to ``path`` through the ASGI app, in-process; (status, response body)."""
    status, _headers, answer = call_asgi(
        asgi, path, body, headers={**invocation_headers(), **headers}
    )
    return status, answer


def pieces_of(secret: str) -> list[str]:
    """The secret and, for a JWT, each of its three parts."""
    return [secret, *(part for part in secret.split(".") if len(part) > 8)]


def assert_absent(secrets: list[str], *texts: str) -> None:
    for secret in secrets:
        for piece in pieces_of(secret):
            for text in texts:
                assert piece not in text, f"{piece[:20]}... leaked into: {text[:300]}"


# -- nothing unsigned reaches user code -------------------------------------------------


@pytest.fixture
def ledger() -> Iterator[list[str]]:
    LEDGER.clear()
    yield LEDGER
    LEDGER.clear()


SIGNED_APP = make_app(SERVICES, identity_keys=[KEY])


def _forged_claims() -> str:
    head, _claims, sig = token().split(".")
    other = token(audience="/invoke/BadInput/fail").split(".")[1]
    return f"{head}.{other}.{sig}"


def _unsecured() -> str:
    now = int(time.time())
    claims = {"aud": ECHO, "exp": now + 60, "iat": now, "nbf": now - 60}
    return jwt.encode(claims, "", algorithm="none")


REJECTED: dict[str, Any] = {
    "no identity headers": lambda: {},
    "scheme unsigned": lambda: {"x-restate-signature-scheme": "unsigned"},
    "scheme without a token": lambda: {"x-restate-signature-scheme": "v1"},
    "token without a scheme": lambda: {"x-restate-jwt-v1": token()},
    "not a JWT": lambda: signed("SECRET-not-a-jwt"),
    "signature stripped": lambda: signed(token().rsplit(".", 1)[0] + "."),
    "unsecured (alg none)": lambda: signed(_unsecured()),
    "HMAC with the public key as secret": lambda: signed(
        jwt.encode(
            {
                "aud": ECHO,
                "exp": int(time.time()) + 60,
                "iat": int(time.time()),
                "nbf": int(time.time()) - 60,
            },
            KEY,
            algorithm="HS256",
        )
    ),
    "wrong key": lambda: signed(token(STRANGER)),
    "wrong key claiming the trusted kid": lambda: signed(token(STRANGER, kid=KEY)),
    "claims swapped under a valid signature": lambda: signed(_forged_claims()),
    "expired": lambda: signed(token(issued=time.time() - 600)),
    "not valid yet": lambda: signed(token(issued=time.time() + 600)),
    "another handler's token": lambda: signed(token(audience="/invoke/BadInput/step")),
    "the discovery token replayed on an invocation": lambda: signed(token(audience="/discover")),
    "a token for a mounted path": lambda: signed(token(audience="/restate" + ECHO)),
}


@pytest.mark.parametrize("case", REJECTED, ids=str)
def test_rejected_requests_never_reach_user_code(
    case: str, ledger: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    headers = REJECTED[case]()
    caplog.set_level(logging.DEBUG)
    status, body = call(SIGNED_APP, ECHO, headers)
    assert status == 401, body
    text = body.decode()
    assert text.startswith("unauthorized: ")
    assert ledger == []
    # Neither the token, nor the trusted key, nor the kid sent along is echoed.
    jwt_sent = headers.get("x-restate-jwt-v1")
    assert_absent([jwt_sent] if jwt_sent else [], text, caplog.text)
    assert KEY not in text and "SECRET" not in text and "SECRET" not in caplog.text
    assert "refused POST /invoke/BadInput/echo" in caplog.text
    # The same endpoint still runs correctly signed requests.
    status, body = call(SIGNED_APP, ECHO, signed(token()))
    assert status == 200 and decode_frames(body)[0] == OutputCommandMessage(value=json("hello"))
    assert ledger == ["echo"]


def test_only_signed_requests_reach_every_handler(ledger: list[str]) -> None:
    for handler in ("echo", "step", "nap", "fail"):
        path = f"/invoke/BadInput/{handler}"
        assert call(SIGNED_APP, path, {})[0] == 401
        assert (
            call(
                SIGNED_APP,
                path,
                signed(token(audience=ECHO if handler != "echo" else "/invoke/BadInput/step")),
            )[0]
            == 401
        )
    assert ledger == []
    for handler in ("echo", "step", "nap", "fail"):
        path = f"/invoke/BadInput/{handler}"
        status, body = call(SIGNED_APP, path, signed(token(audience=path)))
        assert status == 200, body
    assert ledger == ["echo", "step", "nap", "fail"]


def test_a_token_replayed_on_its_own_path_within_its_lifetime_is_accepted(
    ledger: list[str],
) -> None:
    # What request identity does not do (see the threat model in the README): a captured
    # token works again for the same path until it expires (restate-server: 60 s). Only
    # TLS between the server and the service keeps tokens from being captured.
    captured = signed(token())
    for _ in range(2):
        status, _body = call(SIGNED_APP, ECHO, captured)
        assert status == 200
    assert ledger == ["echo", "echo"]
    # ... but not on another path, and not after it expired.
    assert call(SIGNED_APP, "/invoke/BadInput/step", captured)[0] == 401
    assert call(SIGNED_APP, ECHO, signed(token(issued=time.time() - 200)))[0] == 401
    assert ledger == ["echo", "echo"]


# -- secrets stay out of answers and logs -----------------------------------------------

SECRET_INPUT = "SECRET-input-hunter2"
SECRET_HEADER = "Bearer SECRET-header-value"
SECRET_ATTEMPT = "Bearer SECRET-attempt-header"


def _failing_requests() -> dict[str, tuple[str, bytes]]:
    headers = [Header(key="authorization", value=SECRET_HEADER)]
    return {
        "handler raises": (
            "/invoke/BadInput/fail",
            journal(InputCommandMessage(headers=headers, value=json(SECRET_INPUT))),
        ),
        "input does not decode": (
            "/invoke/BadInput/count",
            journal(InputCommandMessage(headers=headers, value=json({"password": SECRET_INPUT}))),
        ),
        "input is not JSON": (
            "/invoke/BadInput/count",
            journal(InputCommandMessage(headers=headers, value=SECRET_INPUT.encode())),
        ),
        "header not UTF-8": (
            "/invoke/BadInput/echo",
            encode_frame(StartMessage(id=b"\x05" * 16, known_entries=1))
            + _input_frame_with_header(b"authorization", SECRET_HEADER.encode() + b"\xff"),
        ),
        "journal mismatch": (
            "/invoke/BadInput/step",
            journal(
                InputCommandMessage(headers=headers),
                RunCommandMessage(result_completion_id=1, name="renamed"),
                RunCompletionNotificationMessage(completion_id=1, value=json(SECRET_INPUT)),
            ),
        ),
    }


def _input_frame_with_header(key: bytes, value: bytes) -> bytes:
    header = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    payload = b"\x0a" + bytes([len(header)]) + header
    return (0x0400).to_bytes(2, "big") + b"\x00\x00" + len(payload).to_bytes(4, "big") + payload


def _failure_texts(body: bytes) -> list[str]:
    texts = []
    for message in decode_frames(body):
        if isinstance(message, ErrorMessage):
            texts += [message.message, message.stacktrace, message.related_command_name or ""]
        elif isinstance(message, OutputCommandMessage):
            assert message.failure is not None, "the request was meant to fail"
            texts.append(message.failure.message)
            texts += [f"{m.key}={m.value}" for m in message.failure.metadata]
    assert texts, "no failure in the answer"
    return texts


@pytest.mark.parametrize("case", list(_failing_requests()), ids=str)
def test_failures_do_not_repeat_inputs_or_header_values(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, body = _failing_requests()[case]
    caplog.set_level(logging.DEBUG)
    status, answer = call(bad_input_services.app, path, {"authorization": SECRET_ATTEMPT}, body)
    assert status == 200
    texts = _failure_texts(answer)
    for secret in (SECRET_INPUT, SECRET_HEADER, SECRET_ATTEMPT, "SECRET"):
        for text in (*texts, caplog.text):
            assert secret not in text, f"{secret!r} leaked into: {text[:300]}"


# -- the same, against a served process ------------------------------------------------


def test_served_endpoint_keeps_rejected_requests_and_secrets_out(tmp_path: Path) -> None:
    ledger_file = tmp_path / "ledger.log"
    service = ServiceProcess(
        "tests.bad_input_services:signed_app",
        env={
            "FRAMEWORK_TEST_IDENTITY_KEY": KEY,
            "FRAMEWORK_TEST_DIR": str(tmp_path),
        },
        log_path=tmp_path / "service.log",
        cwd=ROOT,
    )
    base = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
    rejected = [case() for case in REJECTED.values()]
    with service, httpx.Client(base_url=service.url, http1=False, http2=True, timeout=10) as client:
        answers = []
        for headers in rejected:
            response = client.post(ECHO, content=GOOD, headers={**base, **headers})
            assert response.status_code == 401, response.text
            answers.append(response.text)
        assert not ledger_file.exists(), ledger_file.read_text()

        response = client.post(ECHO, content=GOOD, headers={**base, **signed(token())})
        assert response.status_code == 200
        assert decode_frames(response.content)[0] == OutputCommandMessage(value=json("hello"))
        assert ledger_file.read_text().splitlines() == ["echo"]

        # Signed requests that fail, with secrets in the input and in header values.
        failing_tokens = []
        for path, body in _failing_requests().values():
            failing = token(audience=path)
            failing_tokens.append(failing)
            response = client.post(
                path,
                content=body,
                headers={**base, **signed(failing), "authorization": SECRET_ATTEMPT},
            )
            assert response.status_code == 200
            answers += _failure_texts(response.content)
        log = service.log_text()

    assert "refused POST /invoke/BadInput/echo" in log  # the log is the one we think
    assert "attempt ended with error" in log
    tokens = [h["x-restate-jwt-v1"] for h in rejected if "x-restate-jwt-v1" in h]
    assert_absent([*tokens, *failing_tokens], log, *answers)
    for secret in (SECRET_INPUT, SECRET_HEADER, SECRET_ATTEMPT, "SECRET", KEY):
        assert secret not in log, f"{secret!r} leaked into the service log"
        for answer in answers:
            assert secret not in answer, f"{secret!r} leaked into an answer: {answer[:300]}"
    # An input that does not decode never reaches the handler; a mismatch is found only
    # once the handler replays its steps.
    assert ledger_file.read_text().splitlines() == ["echo", "fail", "step"]


def test_ok_answers_are_framed_and_end(ledger: list[str]) -> None:
    status, body = call(SIGNED_APP, ECHO, signed(token()))
    assert status == 200
    assert decode_frames(body) == [OutputCommandMessage(value=json("hello")), EndMessage()]
