"""Every error framework raises at its users, and the SDK's own control-flow signals.

The tree::

    Exception
    ├── TerminalError              a handler's failure for good: not retried
    │   └── DurableTimeoutError    future.or_timeout() ran out (408; also a builtin TimeoutError)
    ├── RetryableError             fail this attempt; retried, optionally after a delay
    ├── PauseError                 pause the invocation until an operator resumes it (v7)
    ├── HttpError                  the ingress client got a non-2xx answer (framework.client)
    └── RuntimeError
        ├── AppLoadError           ``serve MODULE:ATTR`` names no importable ASGI app
        ├── ServeError             serving failed: the address is taken, a worker died
        └── RestateServerError     the local restate-server (dev loop, test harness) failed
    BaseException
    └── SdkInternalBaseException   the SDK unwinding a handler whose attempt is over
        ├── SuspendedException     the invocation suspended (the server resumes it later)
        └── SdkInternalException   the attempt ended with an error (the server retries it)

The internal ones derive from ``BaseException`` so that ``except Exception`` in handler code
lets them pass. A bare ``except:`` (or ``except BaseException``) must re-raise them:
``if is_internal_exception(e): raise``.

What goes wrong between the server and the SDK (a malformed frame, a journal that no longer
matches the code) never reaches handler code as such: the attempt ends, the server is told
why (``ErrorMessage`` with code 571 or 570) and retries, and the handler sees
``SdkInternalException`` at its pending awaits.
"""

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


class DurableTimeoutError(TerminalError, TimeoutError):
    """A durable future did not complete within ``future.or_timeout(...)``: a TerminalError
    with status 408 (and a builtin ``TimeoutError``, for ``except TimeoutError``)."""

    def __init__(self, message: str, status_code: int = 408) -> None:
        super().__init__(message, status_code)


class PauseError(Exception):
    """Raise it in a handler or a ``ctx.run`` closure to pause the invocation: the server
    keeps it, journal and all, until an operator resumes it (``restate invocations resume``
    or the admin API), e.g. when a step needs a human to fix something outside first.

    Needs service protocol v7; on older protocols the server retries the invocation instead.
    """

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class RetryableError(Exception):
    """A failure to retry, optionally after a given delay (overrides the retry policy once)."""

    def __init__(
        self, message: str, status_code: int = 500, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


_DO_NOT_CATCH = (
    " This is the SDK ending the handler, not a failure of yours: a bare `except:` or "
    "`except BaseException` must re-raise it (`if is_internal_exception(e): raise`); to "
    "handle failures of a step, catch TerminalError."
)


class SdkInternalBaseException(BaseException):
    """The SDK unwinding a handler whose attempt is over. Never swallow it."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message + _DO_NOT_CATCH)


class SuspendedException(SdkInternalBaseException):
    """Raised at the handler's pending awaits when the invocation suspends: nothing more
    can happen in this attempt, and the server resumes the invocation when what it awaits
    has arrived (replaying the journal up to there)."""

    def __init__(self) -> None:
        super().__init__("The invocation suspended; Restate resumes it when it can progress.")


class SdkInternalException(SdkInternalBaseException):
    """Raised at the handler's pending awaits when the attempt ended with an error (a
    failed step, a journal mismatch, a protocol error): the server retries the invocation
    from its journal."""

    def __init__(self) -> None:
        super().__init__("This attempt ended with an error; Restate retries the invocation.")


class HttpError(Exception):
    """The ingress answered with a status that is not 2xx.

    ``message`` is the server's message (for a ``TerminalError`` raised by the handler, its
    message; ``status_code`` is then its code), ``body`` the raw answer.
    """

    status_code: int
    message: str
    body: str | None

    def __init__(self, status_code: int, message: str, body: str | None = None) -> None:
        super().__init__(status_code, message)
        self.status_code, self.message, self.body = status_code, message, body

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.message}"


class AppLoadError(RuntimeError):
    """``MODULE:ATTRIBUTE`` does not name an importable ASGI app."""


class ServeError(RuntimeError):
    """Serving failed: the address could not be bound, or a worker process died."""


class RestateServerError(RuntimeError):
    """The local restate-server (the dev loop's, the test harness's) could not be installed,
    started or asked something, or a service process could not be run."""


def is_internal_exception(e: BaseException) -> bool:
    """True for the SDK's own unwinding signals, which user code must re-raise."""
    return isinstance(e, SdkInternalBaseException)


__all__ = [
    "AppLoadError",
    "DurableTimeoutError",
    "HttpError",
    "RestateServerError",
    "RetryableError",
    "SdkInternalBaseException",
    "SdkInternalException",
    "ServeError",
    "SuspendedException",
    "TerminalError",
    "is_internal_exception",
]
