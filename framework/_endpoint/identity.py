"""Request identity: accept only requests signed by a Restate server we trust.

A Restate server started with ``request-identity-private-key-pem-file`` (an Ed25519 key)
signs every request it makes to a deployment: ``x-restate-signature-scheme: v1`` and, in
``x-restate-jwt-v1``, a JWT (EdDSA) whose ``aud`` is the request's path relative to the
deployment URI (``/discover``, ``/invoke/{service}/{handler}``), with ``nbf``/``iat``/``exp``
around the time it was sent (restate-server 1.7: ``nbf = iat - 60 s``, ``exp = iat + 60 s``)
and the signing key's public key as ``kid``. The endpoint is given those public keys as
``publickeyv1_`` + base58 (Bitcoin alphabet) of the raw 32-byte Ed25519 public key: the form
the server logs at startup ("Loaded request identity key", ``kid: ...``).

Keys are parsed once, when the app is built; checking a request costs one Ed25519 signature
check (the ``kid`` picks the key; others are tried only when it names none of ours).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# PyJWT, cryptography and base58 are imported when an app is given identity keys, not by
# every `import framework` (cryptography alone takes tens of milliseconds to import).

__all__ = [
    "CLOCK_LEEWAY_SECONDS",
    "IDENTITY_KEY_PREFIX",
    "IdentityError",
    "IdentityVerifier",
    "parse_identity_key",
]

IDENTITY_KEY_PREFIX = "publickeyv1_"
SCHEME_HEADER = b"x-restate-signature-scheme"
JWT_HEADER = b"x-restate-jwt-v1"
# How far the server's clock may be off ours beyond the server's own margin (exp, nbf).
CLOCK_LEEWAY_SECONDS = 10.0

_ED25519_KEY_SIZE = 32
_REQUIRED_CLAIMS = ["aud", "exp", "iat", "nbf"]
_CLOCK_HINT = "check that the clocks of the Restate server and this host agree"


class IdentityError(Exception):
    """The request does not prove it comes from a trusted Restate server.

    ``str(error)`` is safe to send back: it says what is wrong, never what would be right.
    """


def parse_identity_key(key: str) -> Ed25519PublicKey:
    """``publickeyv1_<base58>`` -> the Ed25519 public key; ValueError saying what is wrong."""
    import base58
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(key, str):
        raise ValueError(
            f"identity keys are strings like 'publickeyv1_...', not {type(key).__name__}"
        )
    where = f"identity key {key!r}"
    if not key.startswith(IDENTITY_KEY_PREFIX):
        raise ValueError(
            f"{where} does not start with {IDENTITY_KEY_PREFIX!r}; use the key the Restate "
            "server logs at startup ('Loaded request identity key', kid: \"publickeyv1_...\")"
        )
    encoded = key[len(IDENTITY_KEY_PREFIX) :]
    try:
        raw = base58.b58decode(encoded.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError(
            f"{where} is not valid base58 after {IDENTITY_KEY_PREFIX!r} (alphabet "
            f"{base58.BITCOIN_ALPHABET.decode()})"
        ) from None
    if not encoded or len(raw) != _ED25519_KEY_SIZE:
        raise ValueError(
            f"{where} decodes to {len(raw) if encoded else 0} bytes; an Ed25519 public key "
            f"is {_ED25519_KEY_SIZE} bytes"
        )
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError(f"{where} is not a valid Ed25519 public key") from None


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class IdentityVerifier:
    """Checks the request identity headers against a fixed set of trusted public keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        import jwt

        if isinstance(keys, str | bytes):
            raise ValueError(
                "identity_keys takes a list of keys, e.g. identity_keys=['publickeyv1_...'], "
                "not a single string"
            )
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key in keys:
            self._keys[key] = parse_identity_key(key)
        if not self._keys:
            raise ValueError("identity_keys is empty: give at least one 'publickeyv1_...' key")
        # iat must be there but is not checked against our clock: the server backdates nbf
        # by a minute so that a service whose clock is behind still accepts its tokens.
        self._jwt = jwt.PyJWT(options={"require": list(_REQUIRED_CLAIMS), "verify_iat": False})

    @property
    def keys(self) -> list[str]:
        """The trusted keys, as given."""
        return list(self._keys)

    def verify(self, headers: Iterable[tuple[bytes, bytes]], audience: str) -> None:
        """Raise IdentityError unless the headers carry a valid token for ``audience``.

        ``headers`` are ASGI header pairs (names lower case); ``audience`` is the request
        path relative to the deployment URI, e.g. ``/invoke/Greeter/greet``.
        """
        headers = list(headers)
        scheme = _header(headers, SCHEME_HEADER)
        if scheme is None:
            raise IdentityError(
                "missing x-restate-signature-scheme header: this endpoint only accepts "
                "requests signed by a trusted Restate server (request identity v1: start the "
                "server with request-identity-private-key-pem-file)"
            )
        if scheme == "unsigned":
            raise IdentityError(
                "the request is unsigned (x-restate-signature-scheme: unsigned), but this "
                "endpoint only accepts requests signed by a trusted Restate server; start the "
                "server with request-identity-private-key-pem-file"
            )
        if scheme != "v1":
            raise IdentityError(
                "unsupported x-restate-signature-scheme; this endpoint accepts only 'v1'"
            )
        token = _header(headers, JWT_HEADER)
        if not token:
            raise IdentityError("missing x-restate-jwt-v1 header (signature scheme v1)")
        self._check_token(token, audience)

    def _candidates(self, token: str) -> list[Ed25519PublicKey]:
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise IdentityError("x-restate-jwt-v1 is not a well-formed JWT") from None
        named = self._keys.get(kid) if isinstance(kid, str) else None
        if named is None:
            return list(self._keys.values())
        return [named, *(key for key in self._keys.values() if key is not named)]

    def _check_token(self, token: str, audience: str) -> None:
        import jwt

        for key in self._candidates(token):
            try:
                self._jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=audience,
                    leeway=CLOCK_LEEWAY_SECONDS,
                )
                return
            except jwt.InvalidSignatureError:
                continue  # maybe the next key
            # PyJWT checks the claims only once the signature checked out with this key.
            except jwt.ExpiredSignatureError:
                raise IdentityError(f"the request's JWT has expired; {_CLOCK_HINT}") from None
            except jwt.ImmatureSignatureError:
                raise IdentityError(f"the request's JWT is not valid yet; {_CLOCK_HINT}") from None
            except jwt.InvalidAudienceError:
                raise IdentityError(
                    f"the request's JWT is for another path (its audience is not {audience!r})"
                ) from None
            except jwt.MissingRequiredClaimError as error:
                raise IdentityError(
                    f"the request's JWT lacks the required {error.claim!r} claim"
                ) from None
            except jwt.InvalidAlgorithmError:
                raise IdentityError("the request's JWT is not signed with EdDSA") from None
            except jwt.PyJWTError:
                raise IdentityError("x-restate-jwt-v1 is not a valid JWT") from None
        raise IdentityError(
            "bad signature: the request's JWT is not signed by any of this endpoint's identity keys"
        )
