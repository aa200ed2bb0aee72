"""The one exception type for malformed or unexpected service-protocol input."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ProtocolError"]


class ProtocolError(Exception):
    """The peer sent bytes that do not follow the service invocation protocol.

    ``code`` is PROTOCOL_VIOLATION from the protocol spec, so whoever reports this error to
    the runtime (in an ErrorMessage) can use it as is.
    """

    code: ClassVar[int] = 571

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
