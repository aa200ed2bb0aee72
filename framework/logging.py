"""The official SDK's ``restate.logging``: a logger that is quiet while the handler replays."""

from framework._api.extensions import restate_context_is_replaying
from framework._runtime.logging import RestateLoggingFilter, getLogger

__all__ = ["RestateLoggingFilter", "getLogger", "restate_context_is_replaying"]
