"""Request identity: only requests signed by a trusted Restate server get through.

Unit tests drive the verifier and the ASGI app in-process; the end-to-end tests run a
restate-server holding an Ed25519 private key (``RESTATE_WORKER__INVOKER__
REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE``) against services that trust its public key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import base58
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from framework import Context, Service, app
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._endpoint.app import route_path
from framework._endpoint.identity import (
    CLOCK_LEEWAY_SECONDS,
    IdentityError,
    IdentityVerifier,
    parse_identity_key,
)
from framework.exceptions import RestateServerError

ROOT = Path(__file__).resolve().parents[1]
KEY_FILE_ENV = "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"
INVOKE_TYPE = "application/vnd.restate.invocation.v5"
MANIFEST_ACCEPT = "application/vnd.restate.endpointmanifest.v2+json"


# -- helpers --------------------------------------------------------------------------------


def identity_key(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "publickeyv1_" + base58.b58encode(raw).decode()


def make_token(
    private: Ed25519PrivateKey,
    audience: str,
    *,
    issued: float | None = None,
    drop: str | None = None,
    kid: str | None = None,
) -> str:
    """A token shaped like restate-server 1.7's: nbf = iat - 60 s, exp = iat + 60 s."""
    iat = int(time.time() if issued is None else issued)
    claims: dict[str, Any] = {"aud": audience, "exp": iat + 60, "iat": iat, "nbf": iat - 60}
    if drop:
        del claims[drop]
    headers = {"typ": "JWT", "kid": kid if kid is not None else identity_key(private)}
    return jwt.encode(claims, private, algorithm="EdDSA", headers=headers)


def signed(token: str) -> dict[str, str]:
    return {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": token}


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


TRUSTED = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


# -- keys -----------------------------------------------------------------------------------


def test_key_format_is_prefix_plus_base58_of_the_raw_public_key() -> None:
    public = parse_identity_key(identity_key(TRUSTED))
    assert public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == TRUSTED.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # Keys published by Restate (its security docs and sdk-shared-core's tests).
    parse_identity_key("publickeyv1_w7YHemBctH5Ck2nQRQ47iBBqhNHy4FV7t2Usbye2A6f")
    parse_identity_key("publickeyv1_ChjENKeMvCtRnqG2mrBK1HmPKufgFUc98K8B3ononQvp")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["w7YHemBctH5Ck2nQRQ47iBBqhNHy4FV7t2Usbye2A6f"], "does not start with 'publickeyv1_'"),
        (["publickeyv1_w7YHemBctH5Ck2nQRQ47iBBqhNHy4FV7t2Usbye2A6O"], "not valid base58"),
        (["publickeyv1_w7YHemBctH5Ck2nQRQ47iBBqhNHy4FV7t2Usbye2A6"], "an Ed25519 public key is 32"),
        (["publickeyv1_"], "decodes to 0 bytes"),
        ("publickeyv1_w7YHemBctH5Ck2nQRQ47iBBqhNHy4FV7t2Usbye2A6f", "a list of keys"),
        ([b"publickeyv1_w7YHemBctH5Ck2nQRQ47iBBqhNHy4FV7t2Usbye2A6f"], "not bytes"),
    ],
)
def test_invalid_keys_fail_when_the_app_is_built(keys: Any, message: str) -> None:
    greeter = Service("KeyCheck")

    @greeter.handler()
    async def greet(ctx: Context) -> str:
        return "hi"

    with pytest.raises(ValueError, match=message):
        app([greeter], identity_keys=keys)


# -- the verifier ---------------------------------------------------------------------------

VERIFIER = IdentityVerifier([identity_key(OTHER), identity_key(TRUSTED)])
PATH = "/invoke/Greeter/greet"


def refusal(headers: dict[str, str], path: str = PATH) -> str:
    with pytest.raises(IdentityError) as caught:
        VERIFIER.verify(raw_headers(headers), path)
    return str(caught.value)


def test_a_token_from_a_trusted_key_for_this_path_passes() -> None:
    VERIFIER.verify(raw_headers(signed(make_token(TRUSTED, PATH))), PATH)
    VERIFIER.verify(raw_headers(signed(make_token(OTHER, "/discover"))), "/discover")
    # kid naming no trusted key (or lying about it): every key is tried.
    VERIFIER.verify(raw_headers(signed(make_token(TRUSTED, PATH, kid="whatever"))), PATH)
    VERIFIER.verify(raw_headers(signed(make_token(TRUSTED, PATH, kid=identity_key(OTHER)))), PATH)
    # Within the clock leeway.
    skew = CLOCK_LEEWAY_SECONDS / 2
    VERIFIER.verify(raw_headers(signed(make_token(TRUSTED, PATH, issued=time.time() + skew))), PATH)
    VERIFIER.verify(
        raw_headers(signed(make_token(TRUSTED, PATH, issued=time.time() - 60 - skew))), PATH
    )


def test_missing_or_unknown_scheme() -> None:
    assert "missing x-restate-signature-scheme" in refusal({})
    assert "unsigned" in refusal({"x-restate-signature-scheme": "unsigned"})
    assert "accepts only 'v1'" in refusal({"x-restate-signature-scheme": "v2"})
    assert "missing x-restate-jwt-v1" in refusal({"x-restate-signature-scheme": "v1"})
    assert "not a well-formed JWT" in refusal(signed("not.a.jwt"))


def test_untrusted_signer_is_refused_without_details() -> None:
    intruder = Ed25519PrivateKey.generate()
    for kid in (None, identity_key(TRUSTED)):  # even claiming to be the trusted key
        message = refusal(signed(make_token(intruder, PATH, kid=kid)))
        assert message.startswith("bad signature")
        assert identity_key(TRUSTED) not in message and identity_key(OTHER) not in message
    # Tampered claims break the signature too.
    head, _, sig = make_token(TRUSTED, PATH).split(".")
    forged_claims = make_token(intruder, "/discover").split(".")[1]
    assert refusal(signed(f"{head}.{forged_claims}.{sig}")).startswith("bad signature")


def test_other_algorithms_are_refused() -> None:
    now = int(time.time())
    claims = {"aud": PATH, "exp": now + 60, "iat": now, "nbf": now - 60}
    unsecured = jwt.encode(claims, "", algorithm="none")
    assert "EdDSA" in refusal(signed(unsecured))
    hmac = jwt.encode(claims, "s" * 32, algorithm="HS256")
    assert "EdDSA" in refusal(signed(hmac))


def test_claims_are_checked() -> None:
    assert "for another path" in refusal(signed(make_token(TRUSTED, "/invoke/Greeter/other")))
    assert "for another path" in refusal(signed(make_token(TRUSTED, "/discover")))
    late = time.time() - 120 - 2 * CLOCK_LEEWAY_SECONDS
    assert "expired" in refusal(signed(make_token(TRUSTED, PATH, issued=late)))
    early = time.time() + 60 + 2 * CLOCK_LEEWAY_SECONDS
    assert "not valid yet" in refusal(signed(make_token(TRUSTED, PATH, issued=early)))
    for claim in ("aud", "exp", "iat", "nbf"):
        assert f"'{claim}' claim" in refusal(signed(make_token(TRUSTED, PATH, drop=claim)))


# -- the app, in process --------------------------------------------------------------------


def _signed_app() -> Any:
    greeter = Service("InProcess")

    @greeter.handler()
    async def greet(ctx: Context) -> str:
        return "hi"

    return app([greeter], identity_keys=[identity_key(TRUSTED)])


def _get(asgi: Any, path: str, headers: dict[str, str], root_path: str = "") -> Any:
    return asyncio.run(_aget(asgi, path, headers, root_path))


async def _aget(asgi: Any, path: str, headers: dict[str, str], root_path: str) -> Any:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "2",
        "method": "GET",
        "path": root_path + path,
        "root_path": root_path,
        "raw_path": (root_path + path).encode(),
        "query_string": b"",
        "headers": raw_headers({"accept": MANIFEST_ACCEPT, **headers}),
    }
    await asgi(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body.decode()


@pytest.mark.parametrize("root", ["", "/restate", "/a/b"])
def test_app_checks_every_path_but_health(root: str) -> None:
    asgi = _signed_app()
    assert _get(asgi, "/health", {}, root) == (200, "OK")
    status, text = _get(asgi, "/discover", {}, root)
    assert status == 401 and text.startswith("unauthorized: missing x-restate-signature-scheme")
    status, _ = _get(asgi, "/nowhere", {}, root)
    assert status == 401, "unknown paths are not revealed to unsigned callers"
    # The audience is the path below the mount point, as the server signs it.
    status, _ = _get(asgi, "/discover", signed(make_token(TRUSTED, "/discover")), root)
    assert status == 200
    if root:
        status, text = _get(
            asgi, "/discover", signed(make_token(TRUSTED, root + "/discover")), root
        )
        assert status == 401 and "for another path" in text
    status, _ = _get(asgi, "/nowhere", signed(make_token(TRUSTED, "/nowhere")), root)
    assert status == 404


def test_route_path_strips_the_mount_point() -> None:
    assert route_path({"path": "/restate/invoke/S/h", "root_path": "/restate"}) == "/invoke/S/h"
    assert route_path({"path": "/invoke/S/h", "root_path": ""}) == "/invoke/S/h"
    assert route_path({"path": "/restated/discover", "root_path": "/restate"}) == (
        "/restated/discover"
    )


def test_no_keys_means_no_check() -> None:
    greeter = Service("Open")

    @greeter.handler()
    async def greet(ctx: Context) -> str:
        return "hi"

    no_keys: list[list[str] | None] = [None, []]
    for keys in no_keys:
        status, _ = _get(app([greeter], identity_keys=keys), "/discover", {})
        assert status == 200


# -- against a real restate-server that signs its requests ----------------------------------


@dataclass
class SigningSetup:
    server: RestateServer
    service: ServiceProcess
    mounted: ServiceProcess
    key: Ed25519PrivateKey


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningSetup]:
    directory = tmp_path_factory.mktemp("identity")
    private = Ed25519PrivateKey.generate()
    pem = directory / "request-identity.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = RestateServer(env={KEY_FILE_ENV: str(pem)}, log_path=directory / "server.log")
    children: list[ServiceProcess] = []
    try:
        server.start(timeout=60)
        for name in ("signed_app", "mounted_signed_app"):
            child = ServiceProcess(
                f"tests.endpoint_apps:{name}",
                env={"FRAMEWORK_TEST_IDENTITY_KEY": identity_key(private)},
                log_path=directory / f"{name}.log",
                cwd=ROOT,
            )
            children.append(child)
            child.start(timeout=30)
        yield SigningSetup(server, children[0], children[1], private)
    finally:
        for child in children:
            child.stop()
        server.stop()


def test_the_server_logs_the_key_in_the_format_we_take(signing: SigningSetup) -> None:
    assert identity_key(signing.key) in signing.server.log_text()


def test_signed_server_registers_and_invokes(signing: SigningSetup) -> None:
    signing.server.register(signing.service.url)
    signing.server.register(signing.mounted.url + "/restate")
    with httpx.Client(base_url=signing.server.ingress_url, timeout=30) as ingress:
        for service in ("SignedGreeter", "MountedSignedGreeter"):
            response = ingress.post(f"/{service}/greet", json="Ann")
            assert response.status_code == 200, response.text
            assert response.json() == f"hello Ann from {service}"


def test_direct_requests_need_a_valid_token(signing: SigningSetup) -> None:
    key = signing.key
    discover = {"accept": MANIFEST_ACCEPT}
    invoke = {"content-type": INVOKE_TYPE, "accept": INVOKE_TYPE}
    invoke_path = "/invoke/SignedGreeter/greet"
    # h2c with prior knowledge, as the server talks to the service.
    with httpx.Client(base_url=signing.service.url, http1=False, http2=True, timeout=10) as client:
        assert client.get("/health").status_code == 200

        response = client.get("/discover", headers=discover)
        assert response.status_code == 401
        assert "missing x-restate-signature-scheme" in response.text
        response = client.post(invoke_path, headers=invoke, content=b"")
        assert response.status_code == 401

        stranger = Ed25519PrivateKey.generate()
        for path, headers in (("/discover", discover), (invoke_path, invoke)):
            forged = signed(make_token(stranger, path, kid=identity_key(key)))
            response = client.request(
                "GET" if path == "/discover" else "POST", path, headers={**headers, **forged}
            )
            assert response.status_code == 401
            assert "bad signature" in response.text

        elsewhere = signed(make_token(key, "/invoke/SignedGreeter/other"))
        response = client.post(invoke_path, headers={**invoke, **elsewhere}, content=b"")
        assert response.status_code == 401
        assert "for another path" in response.text
        response = client.get("/discover", headers={**discover, **elsewhere})
        assert response.status_code == 401

        stale = signed(make_token(key, "/discover", issued=time.time() - 600))
        response = client.get("/discover", headers={**discover, **stale})
        assert response.status_code == 401 and "expired" in response.text

        good = signed(make_token(key, "/discover"))
        response = client.get("/discover", headers={**discover, **good})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == MANIFEST_ACCEPT


def test_mounted_app_checks_the_path_below_the_mount(signing: SigningSetup) -> None:
    discover = {"accept": MANIFEST_ACCEPT}
    with httpx.Client(base_url=signing.mounted.url, http1=False, http2=True, timeout=10) as client:
        assert client.get("/").text == "the rest of the site"  # not guarded
        assert client.get("/restate/discover", headers=discover).status_code == 401
        below = signed(make_token(signing.key, "/discover"))
        response = client.get("/restate/discover", headers={**discover, **below})
        assert response.status_code == 200, response.text


def test_a_server_without_the_key_cannot_register(
    signing: SigningSetup, restate_server: RestateServer
) -> None:
    with pytest.raises(RestateServerError, match="401"):
        restate_server.register(signing.service.url)
