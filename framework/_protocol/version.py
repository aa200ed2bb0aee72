"""Service protocol versions and their HTTP content types (negotiation only)."""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "MAX_PROTOCOL_VERSION",
    "MIN_PROTOCOL_VERSION",
    "NotARestateRequest",
    "ProtocolVersion",
    "UnsupportedProtocolVersion",
    "content_type",
    "parse_content_type",
]

_CONTENT_TYPE_PREFIX: Final = "application/vnd.restate.invocation.v"


class ProtocolVersion(enum.IntEnum):
    """A service invocation protocol version this SDK can speak."""

    V5 = 5
    V6 = 6
    V7 = 7


MIN_PROTOCOL_VERSION: Final = ProtocolVersion.V5
MAX_PROTOCOL_VERSION: Final = ProtocolVersion.V7


class UnsupportedProtocolVersion(ValueError):
    """The request is a Restate invocation, but in a protocol version we do not speak."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotARestateRequest(ValueError):
    """The request carries no Restate invocation content type at all."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def content_type(version: ProtocolVersion) -> str:
    """The content type that names ``version`` on requests and responses."""
    return f"{_CONTENT_TYPE_PREFIX}{int(version)}"


def _supported() -> str:
    return ", ".join(content_type(v) for v in ProtocolVersion)


def parse_content_type(value: str | None) -> ProtocolVersion:
    """The protocol version named by a request's content type.

    Raises UnsupportedProtocolVersion for a Restate invocation content type of another
    version, and NotARestateRequest for anything else (including a missing header).
    """
    if value is None:
        raise NotARestateRequest(
            "the request has no content-type, so it did not come from a Restate server; "
            "invoke this service through the Restate ingress instead"
        )
    # Media types are case-insensitive and may carry parameters we have no use for.
    media_type = value.split(";", 1)[0].strip().lower()
    if not media_type.startswith(_CONTENT_TYPE_PREFIX):
        raise NotARestateRequest(
            f"the request has content-type {value!r}, so it did not come from a Restate "
            "server; invoke this service through the Restate ingress instead"
        )
    suffix = media_type[len(_CONTENT_TYPE_PREFIX) :]
    if suffix.isascii() and suffix.isdigit():
        number = int(suffix)
        if MIN_PROTOCOL_VERSION <= number <= MAX_PROTOCOL_VERSION:
            return ProtocolVersion(number)
    raise UnsupportedProtocolVersion(
        f"unsupported service protocol version in content-type {value!r}: this service "
        f"supports protocol versions {int(MIN_PROTOCOL_VERSION)} to "
        f"{int(MAX_PROTOCOL_VERSION)} ({_supported()})"
    )
