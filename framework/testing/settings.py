"""The settings the harness starts restate-server with, and how long each step may take."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "APP_GRACEFUL_TIMEOUT",
    "APP_START_TIMEOUT",
    "CLIENT_TIMEOUT",
    "REGISTER_TIMEOUT",
    "SERVER_START_TIMEOUT",
    "STOP_TIMEOUT",
    "always_replay_env",
    "disable_retries_env",
    "harness_server_env",
]

SERVER_START_TIMEOUT = 60.0
APP_START_TIMEOUT = 30.0
REGISTER_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = 60.0
# An in-process app gets this long to finish open requests when the harness stops.
APP_GRACEFUL_TIMEOUT = 1.0


def always_replay_env() -> dict[str, str]:
    """Server settings that suspend an invocation at every await that is not complete yet,
    so every resume is a full replay of the journal."""
    return {"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s"}


def disable_retries_env() -> dict[str, str]:
    """Server settings under which an invocation that fails with a retryable error is not
    retried: after its first attempt it fails for good (as if it raised ``TerminalError``).

    This is the server's default retry policy; a handler or service that sets its own
    ``invocation_retry_policy`` keeps it."""
    return {
        "RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "1",
        "RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS": "kill",
    }


def harness_server_env(
    *,
    always_replay: bool = False,
    disable_retries: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The settings the harness starts restate-server with: a small single node, plus the
    replay and retry switches, plus ``extra``."""
    env = {
        "RESTATE_DEFAULT_NUM_PARTITIONS": "4",
        "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "256 MB",
        "RESTATE_SHUTDOWN_TIMEOUT": "5s",
    }
    if always_replay:
        env.update(always_replay_env())
    if disable_retries:
        env.update(disable_retries_env())
    env.update(extra or {})
    return env
