"""A logger for handler code: tagged with the invocation, silent while replaying.

A handler's code runs again on every replay; without this filter each retry or resume
would repeat the log lines of the steps already journaled.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framework._invocation import Invocation

# The invocation whose handler (or ctx.run closure) is running in this task.
current_invocation: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "framework_current_invocation", default=None
)


class RestateLoggingFilter(logging.Filter):
    """Drops records logged while a handler replays journaled steps; tags the others.

    Records get ``invocation_id`` (``inv_...``, or ``"-"`` outside a handler) and
    ``restate_target`` (``Service/handler``), for use in a format string such as
    ``"%(asctime)s %(invocation_id)s %(message)s"``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        invocation = current_invocation.get()
        if invocation is None:
            record.invocation_id = "-"
            record.restate_target = "-"
            return True
        if invocation.machine.replaying:
            return False
        start = invocation.machine.start
        record.invocation_id = start.debug_id if start is not None else "-"
        record.restate_target = invocation.target
        return True


_FILTER = RestateLoggingFilter()


class _DefaultFields(logging.Filter):
    """Gives records that never met a RestateLoggingFilter the fields our format uses."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "invocation_id"):
            record.invocation_id = "-"
        return True


DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(invocation_id)s] %(message)s"


def configure_default_logging(level: int = logging.INFO) -> bool:
    """Log INFO and up to stderr, tagged with the invocation id, unless the application
    configured logging itself (the root logger has handlers). True if it configured."""
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler()
    handler.addFilter(_DefaultFields())
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    return True


def getLogger(name: str | None = None) -> logging.Logger:
    """``logging.getLogger(name)`` with the RestateLoggingFilter attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RestateLoggingFilter) for f in logger.filters):
        logger.addFilter(_FILTER)
    return logger


__all__ = [
    "DEFAULT_FORMAT",
    "RestateLoggingFilter",
    "configure_default_logging",
    "current_invocation",
    "getLogger",
]
