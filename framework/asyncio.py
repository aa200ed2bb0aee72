"""The official SDK's ``restate.asyncio``: combinators over durable futures."""

from framework._api.combinators import as_completed, gather, select, wait_completed
from framework._api.futures import RestateDurableFuture
from framework.exceptions import TerminalError

__all__ = [
    "RestateDurableFuture",
    "TerminalError",
    "as_completed",
    "gather",
    "select",
    "wait_completed",
]
