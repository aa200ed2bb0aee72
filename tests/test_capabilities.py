"""What official-SDK code reaches for beyond the context API, behind a real restate-server:
journal value codecs (the server's journal and state hold only ciphertext), the unwinding
exceptions at pending awaits, ``Request.attempt_finished_event``, ``current_context``, the
replay flag, ``contextvar`` and extension data closed at the end of an attempt.

Each scenario runs against a default server and one that suspends at every await (so every
resume replays the journal).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from framework import HttpError, create_test_harness
from framework.testing import HarnessEnvironment
from tests import capability_services as svc

pytestmark = pytest.mark.anyio

MODES = ["default", "always_replay"]


@pytest.fixture(params=MODES)
async def codec_env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(
        svc.codec_app,
        always_replay=request.param == "always_replay",
        journal_value_codec=svc.CODEC,
    ) as env:
        yield env


@pytest.fixture(params=MODES)
async def probes_env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(
        svc.probes_app, always_replay=request.param == "always_replay", disable_retries=True
    ) as env:
        yield env


def _events(what: str, invocation_id: str | None = None) -> list[Any]:
    return [
        detail
        for kind, who, detail in list(svc.EVENTS)
        if kind == what and (invocation_id is None or who == invocation_id)
    ]


async def _wait_for_events(what: str, invocation_id: str, count: int = 1) -> list[Any]:
    import anyio

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = _events(what, invocation_id)
        if len(found) >= count:
            return found
        await anyio.sleep(0.05)
    raise AssertionError(f"no {what!r} event for {invocation_id}: {svc.EVENTS[-10:]}")


# -- journal value codec ----------------------------------------------------------------------


async def test_the_journal_and_state_hold_only_ciphertext(codec_env: HarnessEnvironment) -> None:
    key = f"vault-{time.time_ns()}"
    secret = {"note": f"{svc.SECRET_MARK} in the input"}
    answer = await codec_env.client.object_call(svc.store, key, secret)
    assert answer == {
        "echoed": {"echo": {**secret, "stamped": svc.SECRET_MARK}},
        "awakeable": f"{svc.SECRET_MARK} via awakeable",
        "state": secret,
    }
    assert await codec_env.client.object_call(svc.peek, key, None) == secret
    assert _events("codec provided") == [None]  # the provider ran once for the whole app

    mark_hex = svc.SECRET_MARK.encode().hex()
    journal = await codec_env.query(
        "SELECT id, index, entry_type, raw FROM sys_journal WHERE id IN "
        f"(SELECT id FROM sys_invocation WHERE target LIKE 'Vault/{key}/%' OR "
        "target LIKE 'CodecHelpers/%')"
    )
    assert len(journal) >= 8, journal  # input, set, run, call, send, awakeable, get, output
    for entry in journal:
        assert mark_hex not in str(entry.get("raw", "")), entry
    state = await codec_env.query(
        f"SELECT key, value, value_utf8 FROM state WHERE service_key = '{key}'"
    )
    assert [row["key"] for row in state] == ["secret"]
    assert svc.SECRET_MARK not in str(state) and mark_hex not in str(state).lower()


async def test_a_workflow_promise_passes_through_the_codec(codec_env: HarnessEnvironment) -> None:
    workflow_id = f"approval-{time.time_ns()}"
    await codec_env.client.workflow_send(svc.run, workflow_id, "budget")
    await codec_env.client.workflow_call(svc.decide, workflow_id, f"{svc.SECRET_MARK} yes")
    result = await codec_env.client.workflow_attach(svc.run, workflow_id)
    assert result == f"budget: {svc.SECRET_MARK} yes"
    journal = await codec_env.query(
        "SELECT raw FROM sys_journal WHERE id IN (SELECT id FROM sys_invocation WHERE "
        f"target LIKE 'CodecApproval/{workflow_id}/%')"
    )
    assert journal and all(
        svc.SECRET_MARK.encode().hex() not in str(row.get("raw", "")) for row in journal
    )


async def test_a_client_without_the_codec_gets_ciphertext(codec_env: HarnessEnvironment) -> None:
    from framework.client import create_client

    async with create_client(codec_env.ingress_url) as plain:
        with pytest.raises(HttpError) as refused:
            await plain.service_call(svc.echo, {"a": 1})
    # The handler could not decode what a codec-less client sent: a clear terminal 400.
    assert refused.value.status_code == 400
    assert "journal value codec could not decode the input" in refused.value.message


# -- the handler unwinding, the attempt, library access -----------------------------------


async def test_a_suspension_unwinds_the_handler_with_suspended_exception(
    probes_env: HarnessEnvironment, request: pytest.FixtureRequest
) -> None:
    handle = await probes_env.client.service_send(svc.unwind, False)
    assert await handle.attach() == "woke"
    unwound = _events("unwound", handle.invocation_id)
    if request.node.callspec.params["probes_env"] == "always_replay":
        # The sleep suspended the invocation: the await raised the SDK's internal signal,
        # which `except BaseException` sees and is_internal_exception recognises.
        assert unwound == [("SuspendedException", True)]
    else:
        assert unwound == []  # a 300 ms sleep on a default server does not suspend


async def test_an_attempt_ending_in_error_unwinds_with_sdk_internal_exception(
    probes_env: HarnessEnvironment,
) -> None:
    handle = await probes_env.client.service_send(svc.unwind, True)
    found = await _wait_for_events("unwound", handle.invocation_id)
    assert found[0] == ("SdkInternalException", True)


async def test_attempt_event_replay_flag_contextvar_and_current_context(
    probes_env: HarnessEnvironment, request: pytest.FixtureRequest
) -> None:
    handle = await probes_env.client.service_send(svc.attempt, None)
    assert await handle.attach() == "True"  # current_context() inside the run closure too
    invocation_id = handle.invocation_id
    replaying = request.node.callspec.params["probes_env"] == "always_replay"
    starts = _events("replaying at start", invocation_id)  # one per attempt
    # Every await that is not complete suspends with always_replay: several attempts.
    assert len(starts) > 1 if replaying else len(starts) == 1
    finished = await _wait_for_events("attempt finished", invocation_id, len(starts))
    assert finished == [True] * len(starts)
    await _wait_for_events("closed", invocation_id, len(starts))  # extension data closed
    # (Recorded by every attempt that got past the sleep: once, or more with always_replay.)
    assert set(_events("tenant", invocation_id)) == {"tenant-7"}
    assert set(_events("library sees", invocation_id)) == {invocation_id}
    # The replay flag: false on the first run; on each resume, true until the journal is
    # spent. The last attempt replays the step and the sleep after it: still replaying there.
    assert starts == [False] + [True] * (len(starts) - 1)
    after_step = _events("replaying after step", invocation_id)
    assert after_step[-1] is replaying


# -- explicit recovery ------------------------------------------------------------------------


@pytest.fixture(params=["v6", "v7"])
async def recovery_env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(
        svc.recovery_app, enable_protocol_v7=request.param == "v7"
    ) as env:
        yield env


async def test_explicit_recovery_runs_the_handler_anew(recovery_env: HarnessEnvironment) -> None:
    key = f"acct-{time.time_ns()}"
    # The retry saw the state the crashed attempt wrote and ran its step again...
    assert await recovery_env.client.object_call(svc.post, key, 5) == {
        "before": 5,
        "stamp": "attempt 2",
        "attempt": 2,
    }
    # ...while a handler without explicit recovery replays: the old step result, the old
    # state read.
    assert await recovery_env.client.object_call(svc.post_replayed, key, 5) == {
        "before": 0,
        "stamp": "attempt 1",
        "attempt": 2,
    }
    rows = await recovery_env.query(
        "SELECT index, entry_type, name FROM sys_journal WHERE id = (SELECT id FROM "
        f"sys_invocation WHERE target = 'RecoveringLedger/{key}/post') ORDER BY index"
    )
    runs = [row for row in rows if row.get("entry_type") == "Command: Run"]
    # The server kept the first attempt's entries and appended the second attempt's anew.
    assert [row.get("name") for row in runs] == ["stamp", "stamp"], rows
    assert sum(row.get("entry_type") == "Command: Input" for row in rows) == 1
