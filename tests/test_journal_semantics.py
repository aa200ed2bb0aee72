"""What a handler sees on replay, checked with prepared journals through the ASGI endpoint
in-process (no server, no sockets): the order of notifications in the journal decides
``select`` and cancellation, suspensions name exactly what the handler waits for, and a
cancellation is acted upon once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from datetime import timedelta
from typing import Any

import msgspec
import pytest

import framework
from framework import Context, RestateDurableFuture, TerminalError, gather, select
from framework._protocol import (
    CallCommandMessage,
    CallCompletionNotificationMessage,
    CallInvocationIdCompletionNotificationMessage,
    EndMessage,
    ErrorMessage,
    InputCommandMessage,
    Message,
    OneWayCallCommandMessage,
    OutputCommandMessage,
    SendSignalCommandMessage,
    SignalNotificationMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    SuspensionMessage,
)
from tests.journals import call_asgi, invocation_headers, journal, json

svc = framework.Service("Semantics")
INVOCATION_ID = bytes(range(16))


@svc.handler()
async def echo(ctx: Context, value: str) -> str:
    return value


@svc.handler()
async def race(ctx: Context) -> list[Any]:
    awakeable: RestateDurableFuture[Any]
    _awakeable_id, awakeable = ctx.awakeable()
    return await select(awakeable=awakeable, timeout=ctx.sleep(timedelta(hours=1)))


@svc.handler()
async def awakeable_id(ctx: Context) -> str:
    return ctx.awakeable()[0]


@svc.handler()
async def both(ctx: Context) -> None:
    await gather(ctx.sleep(timedelta(hours=1)), ctx.sleep(timedelta(hours=2)))


@svc.handler()
async def call_then_compensate(ctx: Context) -> str:
    try:
        return await ctx.service_call(echo, "hi")
    except TerminalError as error:
        # Compensation after a cancellation: this await is not interrupted again.
        await ctx.sleep(timedelta(hours=1))
        return f"compensated {error.status_code}"


@svc.handler()
async def impatient(ctx: Context) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.sleep(timedelta(hours=1)), 0.05)
    await ctx.sleep(timedelta(hours=2))


@svc.handler()
async def resolve_someone(ctx: Context, awakeable: str) -> None:
    ctx.resolve_awakeable(awakeable, "done")


@svc.handler()
async def scoped(ctx: Context) -> None:
    ctx.scope("tenant-1").service_send(echo, "hi", limit_key="tenant-1/user-7")


app = framework.app([svc])


def run_journal(
    handler: str, *entries: Message, version: int = 6, close_after: float = 0.0
) -> list[Message]:
    """Invoke ``handler`` with a complete journal (StartMessage + entries); the server's
    side of the stream closes with it, or ``close_after`` seconds later."""
    answer = call_asgi(
        app,
        f"/invoke/Semantics/{handler}",
        journal(*entries, id=INVOCATION_ID),
        headers=invocation_headers(version),
        input_open_for=close_after,
    )
    return answer.frames


INPUT = InputCommandMessage()
SLEEP = SleepCommandMessage(result_completion_id=1)
TIMER_FIRED = SleepCompletionNotificationMessage(completion_id=1, void=True)
AWAKENED = SignalNotificationMessage(idx=17, value=json("woken"))
CANCEL = SignalNotificationMessage(idx=1, void=True)


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (AWAKENED, TIMER_FIRED, ["awakeable", "woken"]),
        (TIMER_FIRED, AWAKENED, ["timeout", None]),
    ],
)
def test_select_follows_the_journal_order(
    first: Message, second: Message, winner: list[Any]
) -> None:
    # Both completions are in the journal: the one recorded first won the first time,
    # so it must win on every replay too.
    frames = run_journal("race", INPUT, SLEEP, first, second)
    assert frames == [OutputCommandMessage(value=json(winner)), EndMessage()]


def test_awakeable_id_names_the_invocation_and_signal() -> None:
    frames = run_journal("awakeable_id", INPUT)
    output = frames[0]
    assert isinstance(output, OutputCommandMessage) and output.value is not None
    awakeable = msgspec.json.decode(output.value)
    assert awakeable.startswith("sign_1")
    raw = base64.urlsafe_b64decode(awakeable[6:] + "=" * (-len(awakeable[6:]) % 4))
    assert raw == INVOCATION_ID + (17).to_bytes(4, "big")


@pytest.mark.parametrize("version", [6, 7])
def test_gather_suspends_on_all_of_its_futures(version: int) -> None:
    frames = run_journal("both", INPUT, version=version)
    assert [type(f) for f in frames] == [
        SleepCommandMessage,
        SleepCommandMessage,
        SuspensionMessage,
    ]
    suspension = frames[2]
    assert isinstance(suspension, SuspensionMessage)
    if version >= 7:
        top = suspension.awaiting_on
        assert top is not None and top.combinator_type == 1  # first completed of:
        assert top.waiting_signals == [1]  # ... a cancellation, or
        [all_of] = top.nested_futures  # ... both timers
        assert all_of.combinator_type == 2 and all_of.waiting_completions == [1, 2]
    else:
        assert suspension.waiting_completions == [1, 2]
        assert suspension.waiting_signals == [1]


def test_a_single_sleep_suspends_on_it_and_on_cancellation() -> None:
    frames = run_journal("race", INPUT, version=7)
    suspension = frames[-1]
    assert isinstance(suspension, SuspensionMessage) and suspension.awaiting_on is not None
    assert suspension.awaiting_on.waiting_completions == [1]
    assert suspension.awaiting_on.waiting_signals == [1, 17]


def test_cancellation_cancels_the_call_and_interrupts_one_await() -> None:
    call = CallCommandMessage(
        service_name="Semantics",
        handler_name="echo",
        parameter=json("hi"),
        invocation_id_notification_idx=1,
        result_completion_id=2,
    )
    child_id = CallInvocationIdCompletionNotificationMessage(
        completion_id=1, invocation_id="inv_child"
    )
    frames = run_journal("call_then_compensate", INPUT, call, child_id, CANCEL)
    # The child call is cancelled, the handler's except branch runs, and its next await
    # (a new timer) is not interrupted again: we suspend on the timer alone.
    assert frames[0] == SendSignalCommandMessage(target_invocation_id="inv_child", idx=1, void=True)
    assert isinstance(frames[1], SleepCommandMessage)
    assert frames[1].result_completion_id == 3
    suspension = frames[2]
    assert isinstance(suspension, SuspensionMessage)
    assert suspension.waiting_completions == [3] and suspension.waiting_signals == []
    assert len(frames) == 3


def test_a_call_result_recorded_before_the_cancellation_wins() -> None:
    call = CallCommandMessage(
        service_name="Semantics",
        handler_name="echo",
        parameter=json("hi"),
        invocation_id_notification_idx=1,
        result_completion_id=2,
    )
    frames = run_journal(
        "call_then_compensate",
        INPUT,
        call,
        CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id="inv_c"),
        CallCompletionNotificationMessage(completion_id=2, value=json("hi")),
        CANCEL,
    )
    assert frames == [OutputCommandMessage(value=json("hi")), EndMessage()]


def test_scoped_sends_carry_scope_and_limit_key_on_v7_only() -> None:
    frames = run_journal("scoped", INPUT, version=7)
    send = frames[0]
    assert isinstance(send, OneWayCallCommandMessage)
    assert (send.service_name, send.handler_name) == ("Semantics", "echo")
    assert (send.scope, send.limit_key) == ("tenant-1", "tenant-1/user-7")
    [error] = run_journal("scoped", INPUT, version=6)
    assert isinstance(error, ErrorMessage)
    assert "protocol v7" in error.message and "ENABLE_VQUEUES" in error.message


def test_resolving_something_that_is_no_awakeable_id_fails_for_good() -> None:
    [output, end] = run_journal("resolve_someone", InputCommandMessage(value=json("Pete")))
    assert isinstance(output, OutputCommandMessage) and output.failure is not None
    assert output.failure.code == 400 and "not an awakeable id" in output.failure.message
    assert end == EndMessage()


def test_an_await_given_up_by_its_task_is_not_waited_for() -> None:
    # asyncio.wait_for cancels the first await; the suspension names the second timer only.
    frames = run_journal("impatient", INPUT, close_after=0.3)
    assert [type(f) for f in frames] == [
        SleepCommandMessage,
        SleepCommandMessage,
        SuspensionMessage,
    ]
    suspension = frames[2]
    assert isinstance(suspension, SuspensionMessage)
    assert suspension.waiting_completions == [2]
