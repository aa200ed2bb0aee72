"""The official SDK's ``restate.extensions``: reaching the running handler from library code."""

from framework._api.extensions import contextvar, current_context

__all__ = ["contextvar", "current_context"]
