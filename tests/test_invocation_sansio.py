"""One invocation attempt driven without HTTP: a handler, the invocation driver and a state
machine fed with a prepared journal (tests/journals.py), the answer collected in memory.

This is the endpoint's pump minus the transport: ``Invocation.run`` around ``run_handler``,
with a send callback that keeps the bytes. Each row of the table is a journal in, the
frames out (with their header flags) and the ``ctx.run`` closures that actually executed,
so a replay that runs user code again fails the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import msgspec
import pytest

import framework
from framework import Context, RunOptions, TerminalError
from framework._api.dispatch import run_handler
from framework._journal import JournalMismatch, StateMachine
from framework._protocol import (
    REQUESTED_ACK_FLAG,
    EndMessage,
    ErrorMessage,
    Failure,
    FailureMetadata,
    Future,
    Message,
    OutputCommandMessage,
    ProposeRunCompletionAckMessage,
    ProposeRunCompletionMessage,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    SuspensionMessage,
    encode_frame,
)
from framework._runtime.invocation import Invocation
from tests.journals import (
    decode_frames_with_flags,
    input_entry,
    journal,
    json,
    run_entries,
    state_machine,
)

pytestmark = pytest.mark.fast

svc = framework.Service("Sansio")

# The names of the ctx.run closures that executed, in order (reset for every attempt).
EXECUTED: list[str] = []


async def fetch() -> str:
    EXECUTED.append("fetch")
    return "fresh"


def step(name: str) -> str:
    """A plain (sync) closure: ctx.run runs it in a worker thread."""
    EXECUTED.append(name)
    return f"{name}@fresh"


@svc.handler()
async def greet(ctx: Context, name: str) -> str:
    fetched = await ctx.run_typed("fetch", fetch)
    return f"{name} {fetched}"


@svc.handler()
async def three_steps(ctx: Context) -> list[str]:
    options = RunOptions[str]()
    return [await ctx.run_typed(name, step, options, name) for name in ("a", "b", "c")]


@svc.handler()
async def greet_swallowing(ctx: Context, name: str) -> str:
    try:
        return await ctx.run_typed("fetch", fetch)
    except Exception:  # what user code may do; a journal mismatch is no Exception
        return "swallowed"


@svc.handler()
async def nap(ctx: Context) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "woke"


@svc.handler()
async def refuse(ctx: Context) -> str:
    raise TerminalError("no way", status_code=409, metadata={"reason": "policy"})


@svc.handler()
async def crash(ctx: Context) -> str:
    raise ValueError("boom")


Out = Message | tuple[Message, int]  # an expected frame: flags 0, or (message, flags)


@dataclass
class Attempt:
    """What one attempt produced."""

    frames: list[tuple[Message, int]]
    executed: list[str]  # the ctx.run closures that ran


def _readable(message: Message) -> Message:
    """An ErrorMessage with its stack trace cut to the last line (the exception itself)."""
    if isinstance(message, ErrorMessage) and message.stacktrace:
        last = message.stacktrace.rstrip("\n").rsplit("\n", 1)[-1]
        return msgspec.structs.replace(message, stacktrace=last)
    return message


class Running:
    """One attempt under way, as the endpoint's pump runs it: ``Invocation.run`` around
    ``run_handler``, with a send callback that keeps the bytes in memory. The test plays
    the server: ``server_sends`` feeds more frames, ``server_closes`` ends the request."""

    def __init__(self, machine: StateMachine, handler: str) -> None:
        EXECUTED.clear()
        self.machine = machine
        self.sent: list[bytes] = []
        self.invocation = Invocation(machine, self._send, f"Sansio/{handler}")
        target = svc.handlers[handler]
        invocation = self.invocation
        if machine.input_closed:
            invocation.on_input()
        self.task = asyncio.ensure_future(
            invocation.run(lambda: run_handler(target, invocation, {}, None))
        )

    async def _send(self, data: bytes) -> None:
        self.sent.append(data)

    def frames(self) -> list[tuple[Message, int]]:
        return [(_readable(m), flags) for m, flags in decode_frames_with_flags(b"".join(self.sent))]

    async def until_sent(self, count: int) -> None:
        """Wait until the attempt has sent ``count`` frames."""
        async with asyncio.timeout(10):
            while len(self.frames()) < count:
                await asyncio.sleep(0.001)

    def server_sends(self, *messages: Message) -> None:
        self.machine.receive(b"".join(encode_frame(m) for m in messages))
        self.invocation.on_input()

    def server_closes(self) -> None:
        self.machine.close_input()
        self.invocation.on_input()

    async def finished(self) -> Attempt:
        await asyncio.wait_for(self.task, 10)
        return Attempt(self.frames(), list(EXECUTED))


def run_attempt(handler: str, *entries: Message, version: int = 6) -> Attempt:
    """One attempt over a complete journal whose request has ended (input closed)."""

    async def go() -> Attempt:
        return await Running(state_machine(journal(*entries), version=version), handler).finished()

    return asyncio.run(go())


ANN = input_entry(json("Ann"))
NO_INPUT = input_entry()
TEAPOT = Failure(code=418, message="teapot")
SUSPENDED_ON_1 = SuspensionMessage(waiting_completions=[1], waiting_signals=[1])
MISMATCH_TEXT = str(
    JournalMismatch(
        1,
        RunCommandMessage(result_completion_id=1, name="renamed"),
        RunCommandMessage.TYPE,
        "fetch",
    )
)


@dataclass
class Row:
    """A handler of ``svc``, the journal it replays (the request then ends), the frames out
    and the closures that must have executed."""

    handler: str
    entries: Sequence[Message]
    frames: Sequence[Out]
    executed: Sequence[str] = ()
    version: int = 6


ROWS: dict[str, Row] = {
    "replayed to the end: Output + End, no closure runs": Row(
        "greet",
        [ANN, *run_entries(1, "fetch", json("journal"))],
        [OutputCommandMessage(value=json("Ann journal")), EndMessage()],
    ),
    "the output already journaled: End only": Row(
        "greet",
        [ANN, *run_entries(1, "fetch", json("journal")), OutputCommandMessage(value=json("x"))],
        [EndMessage()],
    ),
    "a replayed run failure is raised again, not re-run": Row(
        "greet",
        [ANN, *run_entries(1, "fetch", failure=TEAPOT)],
        [OutputCommandMessage(failure=TEAPOT), EndMessage()],
    ),
    "sync closures: the journaled ones do not run, the next one does": Row(
        "three_steps",
        [NO_INPUT, *run_entries(1, "a", json("a@journal")), *run_entries(2, "b", json("b@x"))],
        [
            RunCommandMessage(result_completion_id=3, name="c"),
            ProposeRunCompletionMessage(result_completion_id=3, value=json("c@fresh")),
            SuspensionMessage(waiting_completions=[3], waiting_signals=[1]),
        ],
        executed=["c"],
    ),
    "sync closures: all journaled": Row(
        "three_steps",
        [
            NO_INPUT,
            *run_entries(1, "a", json("a@journal")),
            *run_entries(2, "b", json("b@journal")),
            *run_entries(3, "c", json("c@journal")),
        ],
        [
            OutputCommandMessage(value=json(["a@journal", "b@journal", "c@journal"])),
            EndMessage(),
        ],
    ),
    "a run not in the journal, input closed: executed, proposed, suspended (v6)": Row(
        "greet",
        [ANN],
        [
            RunCommandMessage(result_completion_id=1, name="fetch"),
            ProposeRunCompletionMessage(result_completion_id=1, value=json("fresh")),
            SUSPENDED_ON_1,
        ],
        executed=["fetch"],
    ),
    "a run not in the journal, input closed (v7: the proposal asks for an ack)": Row(
        "greet",
        [ANN],
        [
            RunCommandMessage(result_completion_id=1, name="fetch"),
            (
                ProposeRunCompletionMessage(result_completion_id=1, value=json("fresh")),
                REQUESTED_ACK_FLAG,
            ),
            SuspensionMessage(
                awaiting_on=Future(waiting_completions=[1], waiting_signals=[1], combinator_type=1)
            ),
        ],
        executed=["fetch"],
        version=7,
    ),
    "a run journaled without its result runs again (the command is not resent)": Row(
        "greet",
        [ANN, RunCommandMessage(result_completion_id=1, name="fetch")],
        [ProposeRunCompletionMessage(result_completion_id=1, value=json("fresh")), SUSPENDED_ON_1],
        executed=["fetch"],
    ),
    "a timer that has not fired: suspended on it (and on a cancellation)": Row(
        "nap",
        [NO_INPUT, SleepCommandMessage(wake_up_time=1, result_completion_id=1)],
        [SUSPENDED_ON_1],
    ),
    "a timer that fired: the handler goes on": Row(
        "nap",
        [
            NO_INPUT,
            SleepCommandMessage(wake_up_time=1, result_completion_id=1),
            SleepCompletionNotificationMessage(completion_id=1, void=True),
        ],
        [OutputCommandMessage(value=json("woke")), EndMessage()],
    ),
    "TerminalError: the failure is the output": Row(
        "refuse",
        [NO_INPUT],
        [
            OutputCommandMessage(
                failure=Failure(
                    code=409,
                    message="no way",
                    metadata=[FailureMetadata(key="reason", value="policy")],
                )
            ),
            EndMessage(),
        ],
    ),
    "a plain exception: ErrorMessage, for the server to retry": Row(
        "crash",
        [NO_INPUT],
        [
            ErrorMessage(
                code=500,
                message="ValueError: boom",
                stacktrace="ValueError: boom",  # the last line of the trace
                related_command_index=0,
            )
        ],
    ),
    "a journal mismatch: 570 naming the recorded command, nothing runs": Row(
        "greet",
        [ANN, *run_entries(1, "renamed", json("x"))],
        [
            ErrorMessage(
                code=570,
                message=MISMATCH_TEXT,
                related_command_index=1,
                related_command_name="renamed",
                related_command_type=RunCommandMessage.TYPE,
            )
        ],
    ),
    "a journal mismatch is not swallowed by except Exception": Row(
        "greet_swallowing",
        [ANN, *run_entries(1, "renamed", json("x"))],
        [
            ErrorMessage(
                code=570,
                message=MISMATCH_TEXT,
                related_command_index=1,
                related_command_name="renamed",
                related_command_type=RunCommandMessage.TYPE,
            )
        ],
    ),
}


@pytest.mark.parametrize("case", ROWS, ids=str)
def test_one_attempt(case: str) -> None:
    row = ROWS[case]
    result = run_attempt(row.handler, *row.entries, version=row.version)
    expected = [out if isinstance(out, tuple) else (out, 0) for out in row.frames]
    assert result.frames == expected
    assert result.executed == list(row.executed), "ctx.run closures that executed"


# -- the request still open: completions arrive while the handler waits ------------------


@pytest.mark.parametrize("version", [6, 7])
def test_a_completion_arriving_later_wakes_the_handler(version: int) -> None:
    # v6: the server sends the run's stored result; v7: it acks the proposal.
    stored: Message = (
        RunCompletionNotificationMessage(completion_id=1, value=json("fresh"))
        if version < 7
        else ProposeRunCompletionAckMessage(completion_id=1)
    )

    async def scenario() -> Attempt:
        running = Running(state_machine(journal(ANN), version=version, close_input=False), "greet")
        await running.until_sent(2)  # RunCommand, ProposeRunCompletion
        running.server_sends(stored)
        await running.until_sent(4)  # Output, End
        running.server_closes()
        return await running.finished()

    result = asyncio.run(scenario())
    flags = REQUESTED_ACK_FLAG if version >= 7 else 0
    assert result.frames == [
        (RunCommandMessage(result_completion_id=1, name="fetch"), 0),
        (ProposeRunCompletionMessage(result_completion_id=1, value=json("fresh")), flags),
        (OutputCommandMessage(value=json("Ann fresh")), 0),
        (EndMessage(), 0),
    ]
    assert result.executed == ["fetch"]


def test_no_suspension_while_the_request_is_open() -> None:
    # The timer has not fired and the server may still send its completion: the handler
    # waits, without a Suspension, until the request ends; it suspends then.
    async def scenario() -> tuple[list[tuple[Message, int]], bool, Attempt]:
        machine = state_machine(
            journal(NO_INPUT, SleepCommandMessage(wake_up_time=1, result_completion_id=1)),
            close_input=False,
        )
        running = Running(machine, "nap")
        await asyncio.sleep(0.1)
        while_open = running.frames(), running.task.done()
        running.server_closes()
        return *while_open, await running.finished()

    while_open, ended_while_open, result = asyncio.run(scenario())
    assert (while_open, ended_while_open) == ([], False)
    assert result.frames == [(SUSPENDED_ON_1, 0)]
