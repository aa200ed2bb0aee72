"""The official SDK's ``restate.context_managers``: ``contextvar`` for async context managers."""

from framework._api.extensions import contextvar

__all__ = ["contextvar"]
