"""A logger for handler code: tagged with the invocation, silent while replaying.

A handler's code runs again on every replay; without this filter each retry or resume
would repeat the log lines of the steps already journaled.
"""

from __future__ import annotations

import logging
import os

import msgspec

from framework._runtime.invocation import current_invocation
from framework._runtime.tracing import current_trace_id


class RestateLoggingFilter(logging.Filter):
    """Drops records logged while a handler replays journaled steps; tags the others.

    Records get ``invocation_id`` (``inv_...``, or ``"-"`` outside a handler),
    ``restate_target`` (``Service/handler``) and ``trace_id`` (W3C, when the invocation
    carries a trace context), for use in a format string such as
    ``"%(asctime)s %(invocation_id)s %(message)s"``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        invocation = current_invocation.get()
        if invocation is None:
            record.invocation_id = "-"
            record.restate_target = "-"
            record.trace_id = "-"
            return True
        if invocation.machine.replaying:
            return False
        start = invocation.machine.start
        record.invocation_id = start.debug_id if start is not None else "-"
        record.restate_target = invocation.target
        record.trace_id = current_trace_id() or "-"
        return True


_FILTER = RestateLoggingFilter()


class _DefaultFields(logging.Filter):
    """Gives records that never met a RestateLoggingFilter the fields our format uses."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "invocation_id"):
            record.invocation_id = "-"
        return True


DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(invocation_id)s] %(message)s"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the invocation's
    ``invocation_id``, ``restate_target`` and ``trace_id`` when there are any."""

    _FIELDS = ("invocation_id", "restate_target", "trace_id")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self._FIELDS:
            value = getattr(record, name, "-")
            if value != "-":
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def configure_default_logging(level: int = logging.INFO, *, json: bool | None = None) -> bool:
    """Log INFO and up to stderr, tagged with the invocation id, unless the application
    configured logging itself (the root logger has handlers). True if it configured.

    ``json`` (default: ``FRAMEWORK_LOG_FORMAT=json`` in the environment) writes one JSON
    object per line instead of text, for log pipelines.
    """
    root = logging.getLogger()
    if root.handlers:
        return False
    if json is None:
        json = os.environ.get("FRAMEWORK_LOG_FORMAT", "").lower() == "json"
    handler = logging.StreamHandler()
    handler.addFilter(_DefaultFields())
    handler.setFormatter(JsonLogFormatter() if json else logging.Formatter(DEFAULT_FORMAT))
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
    "JsonLogFormatter",
    "RestateLoggingFilter",
    "configure_default_logging",
    "current_invocation",
    "getLogger",
]
