"""What a journal mismatch or a PauseError does, on a protocol v7 restate-server: retry (the
default), pause the invocation for an operator, or fail it for good (ErrorMessage.behavior),
seen through the admin API's invocation status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import framework
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

ATTEMPTS: dict[str, int] = {}


def _attempt(name: str) -> int:
    ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
    return ATTEMPTS[name]


def _changing_handler(name: str) -> Any:
    """A handler whose step is named differently on every attempt: a journal mismatch as
    soon as it replays."""

    async def changing(ctx: framework.Context, _: None) -> str:
        await ctx.run_typed(f"step-{_attempt(name)}", lambda: "done")
        await ctx.sleep(__import__("datetime").timedelta(milliseconds=10))
        return "finished"

    changing.__name__ = name
    return changing


svc = framework.Service("Behaviors", journal_mismatch="pause")
svc.handler(name="defaults_to_pause")(_changing_handler("defaults_to_pause"))
svc.handler(name="fails", journal_mismatch="fail")(_changing_handler("fails"))
svc.handler(name="retries", journal_mismatch="retry")(_changing_handler("retries"))


def _operator_needed() -> str:
    _attempt("pauses")
    raise framework.PauseError("the ledger is locked: unlock it, then resume")


@svc.handler()
async def pauses(ctx: framework.Context, _: None) -> str:
    await ctx.run_typed("check-ledger", _operator_needed)
    return "unreachable"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(
        framework.app([svc]), always_replay=True, enable_protocol_v7=True
    ) as environment:
        yield environment


async def _status_after_send(env: HarnessEnvironment, handler: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=env.ingress_url, timeout=30) as ingress:
        sent = await ingress.post(f"/Behaviors/{handler}/send", json=None)
        assert sent.status_code == 202, sent.text
    invocation_id = sent.json()["invocationId"]
    row: dict[str, Any] = {}
    for _ in range(150):
        rows = await env.query(f"SELECT * FROM sys_invocation WHERE id = '{invocation_id}'")
        row = rows[0] if rows else {}
        if row.get("status") in ("paused", "completed") or (row.get("retry_count") or 0) >= 2:
            return row
        await asyncio.sleep(0.1)
    return row


async def test_a_mismatch_pauses_when_the_service_says_so(env: HarnessEnvironment) -> None:
    row = await _status_after_send(env, "defaults_to_pause")
    assert row["status"] == "paused", row
    attempts = ATTEMPTS["defaults_to_pause"]
    await asyncio.sleep(0.5)
    assert ATTEMPTS["defaults_to_pause"] == attempts == 2  # recorded once, mismatched once


async def test_a_mismatch_fails_the_invocation_when_the_handler_says_so(
    env: HarnessEnvironment,
) -> None:
    row = await _status_after_send(env, "fails")
    assert row["status"] == "completed" and row["completion_result"] == "failure", row
    assert "journal mismatch" in (row["completion_failure"] or ""), row


async def test_a_mismatch_is_retried_by_default(env: HarnessEnvironment) -> None:
    row = await _status_after_send(env, "retries")
    assert row["status"] not in ("paused", "completed"), row
    assert (row["retry_count"] or 0) >= 2, row


async def test_a_pause_error_in_a_step_pauses_the_invocation(env: HarnessEnvironment) -> None:
    row = await _status_after_send(env, "pauses")
    assert row["status"] == "paused", row
    await asyncio.sleep(0.5)
    assert ATTEMPTS["pauses"] == 1  # paused, not retried
