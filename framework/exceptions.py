"""Errors a handler raises or catches, and the SDK's internal control-flow signals."""

from __future__ import annotations

from datetime import timedelta


class TerminalError(Exception):
    """A failure that ends the invocation for good: it is not retried.

    Raised from a handler it becomes the invocation's failure output; raised inside
    ``ctx.run`` it is recorded as the step's result and re-raised on every replay.
    """

    def __init__(
        self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = dict(metadata) if metadata else {}

    def __repr__(self) -> str:
        return f"TerminalError({self.message!r}, status_code={self.status_code})"


class RetryableError(Exception):
    """A failure to retry, optionally after a given delay (overrides the retry policy once)."""

    def __init__(
        self, message: str, status_code: int = 500, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class SdkInternalBaseException(BaseException):
    """Control flow of the SDK (suspension, attempt ended). Never catch or swallow it.

    It derives from BaseException so that ``except Exception`` in user code lets it pass.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


class SuspendedException(SdkInternalBaseException):
    """The invocation suspended: the server will resume it when what it awaits arrives."""


class AttemptEndedException(SdkInternalBaseException):
    """This attempt has ended (an error was reported to the server); stop the handler."""


def is_internal_exception(error: BaseException) -> bool:
    """True for the SDK's own control-flow exceptions, which user code must re-raise."""
    return isinstance(error, SdkInternalBaseException)


__all__ = [
    "AttemptEndedException",
    "RetryableError",
    "SdkInternalBaseException",
    "SuspendedException",
    "TerminalError",
    "is_internal_exception",
]
