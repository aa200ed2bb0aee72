"""The journal layer: one invocation's state machine, sans I/O."""

from framework._journal.machine import (
    CANCEL_SIGNAL_ID,
    FAIL,
    JOURNAL_MISMATCH,
    PAUSE,
    PROTOCOL_VIOLATION,
    RETRY,
    VOID,
    JournalMismatch,
    Key,
    Result,
    StateMachine,
)

__all__ = [
    "CANCEL_SIGNAL_ID",
    "FAIL",
    "JOURNAL_MISMATCH",
    "PAUSE",
    "PROTOCOL_VIOLATION",
    "RETRY",
    "VOID",
    "JournalMismatch",
    "Key",
    "Result",
    "StateMachine",
]
