"""Which failures of a model call are worth retrying, and the retry policy steps get when the
middleware is given none."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from framework import RunOptions

__all__ = ["DEFAULT_RUN_OPTIONS", "cannot_succeed", "status_of"]

DEFAULT_RUN_OPTIONS: RunOptions[Any] = RunOptions(
    max_attempts=5,
    initial_retry_interval=timedelta(seconds=1),
    retry_interval_factor=2.0,
    max_retry_interval=timedelta(seconds=30),
)
"""Five attempts, one to sixteen seconds apart: rides out rate limits and brief outages, yet a
model that keeps failing fails the invocation within about half a minute."""

# Client errors a provider answers the same way however often it is asked; 408 (timeout),
# 409 (conflict), 425 (too early) and 429 (rate limited) are the 4xx ones that clear up.
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})


def status_of(error: BaseException) -> int | None:
    """The HTTP status a provider SDK attached to its exception, if any (``status_code`` on
    openai/anthropic errors, ``response.status_code`` on httpx's, ``code`` on google's)."""
    for holder in (error, getattr(error, "response", None)):
        for attribute in ("status_code", "status", "code"):
            value = getattr(holder, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def cannot_succeed(error: BaseException) -> bool:
    """True when asking the model again would only fail again: a request it rejects (bad
    request, authentication, permission, unknown model, payload too large) or a model that
    does not implement what the agent needs (``bind_tools``, say)."""
    if isinstance(error, NotImplementedError):
        return True
    status = status_of(error)
    return status is not None and 400 <= status < 500 and status not in _TRANSIENT_4XX
