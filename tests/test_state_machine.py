"""The journal state machine on its own (sans-IO): journal bytes in, calls made, frames out.

Every case is a row of a table: the journal the machine is fed (built with tests/journals.py),
the calls the invocation driver makes with what each returns, and the exact frames (with
their header flags) ``take_output()`` hands back for the response. No server, no HTTP, no
event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from framework._journal import VOID, JournalMismatch, StateMachine
from framework._protocol import (
    REQUESTED_ACK_FLAG,
    AttachInvocationCommandMessage,
    CallCommandMessage,
    ClearAllStateCommandMessage,
    ClearStateCommandMessage,
    CompleteAwakeableCommandMessage,
    CompletePromiseCommandMessage,
    CustomEntry,
    EndMessage,
    ErrorMessage,
    Failure,
    Future,
    GetEagerStateCommandMessage,
    GetEagerStateKeysCommandMessage,
    GetLazyStateCommandMessage,
    GetLazyStateCompletionNotificationMessage,
    GetLazyStateKeysCommandMessage,
    GetPromiseCommandMessage,
    Header,
    Message,
    OneWayCallCommandMessage,
    OutputCommandMessage,
    PeekPromiseCommandMessage,
    ProposeRunCompletionAckMessage,
    ProposeRunCompletionMessage,
    ProtocolError,
    ProtocolVersion,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    SetStateCommandMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    SuspensionMessage,
    encode_frame,
)
from tests.journals import (
    StartFields,
    decode_frames,
    decode_frames_with_flags,
    eager_state,
    frame,
    input_entry,
    journal,
    json,
    run_entries,
    start,
    state_machine,
)

pytestmark = pytest.mark.fast

_V6 = ProtocolVersion.V6
INPUT = input_entry(json("Ann"))

Call = Callable[[StateMachine], object]
# An expected frame: a message (header flags 0) or (message, flags).
Out = Message | tuple[Message, int]


@dataclass
class Case:
    """One row: journal entries in (and StartMessage fields), the calls with what each returns,
    the frames out. The request stays open after the journal (as on HTTP/2), so a row's calls
    may feed the machine more frames from the server."""

    entries: Sequence[Message]
    calls: Sequence[tuple[Call, object]]
    frames: Sequence[Out]
    version: int = 6
    start: StartFields = field(default_factory=lambda: StartFields())


def run_case(case: Case) -> None:
    machine = state_machine(
        journal(*case.entries, **case.start), version=case.version, close_input=False
    )
    assert machine.ready
    for number, (call, expected) in enumerate(case.calls):
        assert call(machine) == expected, f"call #{number}"
    expected_frames = [out if isinstance(out, tuple) else (out, 0) for out in case.frames]
    assert decode_frames_with_flags(machine.take_output()) == expected_frames
    assert machine.take_output() == b"", "take_output hands each frame out once"


def receive(*messages: Message) -> Call:
    """A call feeding the machine more frames from the server (live, after the journal)."""
    return lambda machine: machine.receive(b"".join(encode_frame(m) for m in messages))


# -- bootstrap: the handler may run once every announced entry is in ----------------------

BOOTSTRAP: dict[str, tuple[bytes, list[bool], int]] = {
    # (request body, ``ready`` after each of its frames, journal entries counted)
    "no entries announced": (journal(known=0), [True], 0),
    "input only": (journal(INPUT), [False, True], 1),
    "a run and its result": (
        journal(INPUT, *run_entries(1, "a", json(1))),
        [False, False, False, True],
        3,
    ),
    "a custom entry counts": (
        journal(INPUT, CustomEntry(type_id=0xFC01, payload=b"\x08\x01")),
        [False, False, True],
        2,
    ),
    "live notifications do not count": (
        journal(INPUT)
        + encode_frame(SleepCompletionNotificationMessage(completion_id=1, void=True)),
        [False, True, True],
        1,
    ),
    "fewer entries than announced": (journal(INPUT, known=3), [False, False], 1),
}


@pytest.mark.parametrize("case", BOOTSTRAP, ids=str)
def test_ready_only_after_the_announced_entries(case: str) -> None:
    body, ready_after, counted = BOOTSTRAP[case]
    frames = decode_frames(body)
    machine = StateMachine(_V6)
    seen = []
    for message in frames:
        machine.receive(encode_frame(message))
        seen.append(machine.ready)
    assert seen == ready_after
    assert machine.received_entries == counted
    assert machine.take_output() == b"", "nothing goes out before the handler runs"


def test_ready_flips_on_the_last_byte_of_the_journal() -> None:
    body = journal(INPUT, *run_entries(1, "a", json(1)))
    machine = StateMachine(_V6)
    for i in range(len(body)):
        assert not machine.ready, f"ready after {i} of {len(body)} bytes"
        machine.receive(body[i : i + 1])
    assert machine.ready
    assert machine.input == INPUT and machine.known_entries == machine.received_entries == 3
    assert machine.replaying  # the run is still to be re-issued


# -- commands out, with their completion ids ----------------------------------------------

HEADERS = [Header(key="x-tenant", value="t1")]

COMMANDS: dict[str, Case] = {
    "eager state: a known key and a missing one": Case(
        entries=[INPUT],
        start={"state_map": eager_state({"a": json(1)}), "partial_state": False},
        calls=[(lambda m: m.get_state("a"), (json(1), 0)), (lambda m: m.get_state("b"), (VOID, 0))],
        frames=[
            GetEagerStateCommandMessage(key=b"a", value=json(1)),
            GetEagerStateCommandMessage(key=b"b", void=True),
        ],
    ),
    "partial state: a key sent along is eager, another one lazy": Case(
        entries=[INPUT],
        start={"state_map": eager_state({"a": json(1)}), "partial_state": True},
        calls=[
            (lambda m: m.get_state("a"), (json(1), 0)),
            (lambda m: m.get_state("b"), (None, 1)),
            (lambda m: m.resolve_one(1), None),  # not there yet
            (receive(GetLazyStateCompletionNotificationMessage(completion_id=1, value=b"")), None),
            (lambda m: m.resolve_one(1), b""),  # present and empty, which is not missing
        ],
        frames=[
            GetEagerStateCommandMessage(key=b"a", value=json(1)),
            GetLazyStateCommandMessage(key=b"b", result_completion_id=1),
        ],
    ),
    "partial state: what the handler wrote is read back eagerly": Case(
        entries=[INPUT],
        start={"partial_state": True},
        calls=[
            (lambda m: m.set_state("a", json(2)), None),
            (lambda m: m.get_state("a"), (json(2), 0)),
            (lambda m: m.clear_state("a"), None),
            (lambda m: m.get_state("a"), (VOID, 0)),
            (lambda m: m.clear_all_state(), None),
            (lambda m: m.get_state("z"), (VOID, 0)),  # nothing left, anywhere
            (lambda m: m.state_keys(), ([], 0)),
        ],
        frames=[
            SetStateCommandMessage(key=b"a", value=json(2)),
            GetEagerStateCommandMessage(key=b"a", value=json(2)),
            ClearStateCommandMessage(key=b"a"),
            GetEagerStateCommandMessage(key=b"a", void=True),
            ClearAllStateCommandMessage(),
            GetEagerStateCommandMessage(key=b"z", void=True),
            GetEagerStateKeysCommandMessage(value=[]),
        ],
    ),
    "state keys: eager when the state is complete, lazy when partial": Case(
        entries=[INPUT],
        start={"state_map": eager_state({"b": json(1), "a": json(2)}), "partial_state": False},
        calls=[(lambda m: m.state_keys(), ([b"a", b"b"], 0))],
        frames=[GetEagerStateKeysCommandMessage(value=[b"a", b"b"])],
    ),
    "state keys: lazy when partial": Case(
        entries=[INPUT],
        start={"state_map": eager_state({"a": json(2)}), "partial_state": True},
        calls=[(lambda m: m.state_keys(), (None, 1))],
        frames=[GetLazyStateKeysCommandMessage(result_completion_id=1)],
    ),
    "every awaited command takes the next completion id": Case(
        entries=[INPUT],
        calls=[
            (lambda m: m.sleep(1_700_000_000_000, "nap"), 1),
            (
                lambda m: m.call("Svc", "greet", json("Bo"), key="k", headers=HEADERS),
                (2, 3),
            ),
            (lambda m: m.send("Svc", "greet", json("Cy"), invoke_time_ms=5), 4),
            (lambda m: m.attach_invocation("inv_other"), 5),
            (lambda m: m.get_promise("approved"), 6),
            (lambda m: m.peek_promise("approved"), 7),
            (lambda m: m.complete_promise("done", json(True)), 8),
            (lambda m: m.complete_awakeable("sign_1abc", json("ok")), None),  # no id: no answer
            (lambda m: m.sleep(5), 9),
        ],
        frames=[
            SleepCommandMessage(wake_up_time=1_700_000_000_000, result_completion_id=1, name="nap"),
            CallCommandMessage(
                service_name="Svc",
                handler_name="greet",
                parameter=json("Bo"),
                headers=HEADERS,
                key="k",
                invocation_id_notification_idx=2,
                result_completion_id=3,
            ),
            OneWayCallCommandMessage(
                service_name="Svc",
                handler_name="greet",
                parameter=json("Cy"),
                invoke_time=5,
                invocation_id_notification_idx=4,
            ),
            AttachInvocationCommandMessage(invocation_id="inv_other", result_completion_id=5),
            GetPromiseCommandMessage(key="approved", result_completion_id=6),
            PeekPromiseCommandMessage(key="approved", result_completion_id=7),
            CompletePromiseCommandMessage(
                key="done", completion_value=json(True), result_completion_id=8
            ),
            CompleteAwakeableCommandMessage(awakeable_id="sign_1abc", value=json("ok")),
            SleepCommandMessage(wake_up_time=5, result_completion_id=9),
        ],
    ),
    "replay: the recorded ids win, new commands continue above them": Case(
        entries=[
            INPUT,
            SleepCommandMessage(wake_up_time=1, result_completion_id=7),
            CallCommandMessage(
                service_name="Svc",
                handler_name="greet",
                invocation_id_notification_idx=10,
                result_completion_id=11,
            ),
            OneWayCallCommandMessage(
                service_name="Svc", handler_name="greet", invocation_id_notification_idx=20
            ),
            AttachInvocationCommandMessage(invocation_id="inv_other", result_completion_id=30),
            GetPromiseCommandMessage(key="approved", result_completion_id=40),
        ],
        calls=[
            # The wake-up time is not compared: "now" differs on every attempt.
            (lambda m: m.sleep(999), 7),
            (lambda m: m.call("Svc", "greet", b""), (10, 11)),
            (lambda m: m.send("Svc", "greet", b""), 20),
            (lambda m: m.attach_invocation("inv_other"), 30),
            (lambda m: m.get_promise("approved"), 40),
            (lambda m: m.replaying, False),
            (lambda m: m.sleep(999), 41),
        ],
        frames=[SleepCommandMessage(wake_up_time=999, result_completion_id=41)],
    ),
    "replay: a recorded state read wins over the eager state": Case(
        entries=[INPUT, GetEagerStateCommandMessage(key=b"a", value=json("then"))],
        start={"state_map": eager_state({"a": json("now")})},
        calls=[(lambda m: m.get_state("a"), (json("then"), 0))],
        frames=[],
    ),
    "replay: a lazy read answered by its recorded notification": Case(
        entries=[
            INPUT,
            GetLazyStateCommandMessage(key=b"a", result_completion_id=1),
            GetLazyStateCompletionNotificationMessage(completion_id=1, value=json("stored")),
        ],
        start={"partial_state": True},
        calls=[
            (lambda m: m.get_state("a"), (None, 1)),  # the driver awaits completion 1 ...
            (lambda m: m.resolve_one(1), json("stored")),  # ... which the journal holds
            (lambda m: m.sleep(1), 2),
        ],
        frames=[SleepCommandMessage(wake_up_time=1, result_completion_id=2)],
    ),
    "replay: a recorded output is not sent again, only End": Case(
        entries=[INPUT, OutputCommandMessage(value=json("hi"))],
        calls=[(lambda m: m.write_output(json("hi")), None)],
        frames=[EndMessage()],
    ),
}


@pytest.mark.parametrize("case", COMMANDS, ids=str)
def test_commands(case: str) -> None:
    run_case(COMMANDS[case])


# -- ctx.run: answered from the journal, or proposed --------------------------------------

FAILED = Failure(code=500, message="gave up")

RUNS: dict[str, Case] = {
    "replayed with a value: nothing to execute, nothing out": Case(
        entries=[INPUT, *run_entries(1, "fetch", json(7))],
        calls=[(lambda m: m.run("fetch"), (False, 1)), (lambda m: m.resolve_one(1), json(7))],
        frames=[],
    ),
    "replayed with a failure": Case(
        entries=[INPUT, *run_entries(1, "fetch", failure=FAILED)],
        calls=[(lambda m: m.run("fetch"), (False, 1)), (lambda m: m.resolve_one(1), FAILED)],
        frames=[],
    ),
    "journaled but never completed: executes again, the command is not resent": Case(
        entries=[INPUT, RunCommandMessage(result_completion_id=1, name="fetch")],
        calls=[
            (lambda m: m.run("fetch"), (True, 1)),
            (lambda m: m.propose_run(1, json(8)), None),
        ],
        frames=[ProposeRunCompletionMessage(result_completion_id=1, value=json(8))],
    ),
    "new on v6: RunCommand, then the proposal, completed by a notification": Case(
        entries=[INPUT],
        calls=[
            (lambda m: m.run("fetch"), (True, 1)),
            (lambda m: m.propose_run(1, json(8)), None),
            (lambda m: m.resolve_one(1), None),  # proposed is not stored yet
            (receive(RunCompletionNotificationMessage(completion_id=1, value=json(8))), None),
            (lambda m: m.resolve_one(1), json(8)),
        ],
        frames=[
            RunCommandMessage(result_completion_id=1, name="fetch"),
            ProposeRunCompletionMessage(result_completion_id=1, value=json(8)),
        ],
    ),
    "new on v7: the proposal requests an ack, which completes the run": Case(
        version=7,
        entries=[INPUT],
        calls=[
            (lambda m: m.run("fetch"), (True, 1)),
            (lambda m: m.propose_run(1, json(8)), None),
            (lambda m: m.resolve_one(1), None),
            (receive(ProposeRunCompletionAckMessage(completion_id=1)), None),
            (lambda m: m.resolve_one(1), json(8)),
        ],
        frames=[
            RunCommandMessage(result_completion_id=1, name="fetch"),
            (
                ProposeRunCompletionMessage(result_completion_id=1, value=json(8)),
                REQUESTED_ACK_FLAG,
            ),
        ],
    ),
    "new on v7, failed: the failure is proposed": Case(
        version=7,
        entries=[INPUT],
        calls=[(lambda m: m.run("fetch"), (True, 1)), (lambda m: m.propose_run(1, FAILED), None)],
        frames=[
            RunCommandMessage(result_completion_id=1, name="fetch"),
            (
                ProposeRunCompletionMessage(result_completion_id=1, failure=FAILED),
                REQUESTED_ACK_FLAG,
            ),
        ],
    ),
    "the first runs replayed, the next one new": Case(
        entries=[INPUT, *run_entries(1, "a", json(1)), *run_entries(2, "b", json(2))],
        calls=[
            (lambda m: m.run("a"), (False, 1)),
            (lambda m: m.run("b"), (False, 2)),
            (lambda m: m.run("c"), (True, 3)),
        ],
        frames=[RunCommandMessage(result_completion_id=3, name="c")],
    ),
}


@pytest.mark.parametrize("case", RUNS, ids=str)
def test_runs(case: str) -> None:
    run_case(RUNS[case])


# -- journal mismatches: the index and both sides -----------------------------------------

CALL_TO_A = CallCommandMessage(
    service_name="Svc",
    handler_name="a",
    key="k1",
    invocation_id_notification_idx=1,
    result_completion_id=2,
)

MISMATCHES: dict[str, tuple[list[Message], list[Call], int, type[Message], str, list[str]]] = {
    # (journal entries, calls (the last one mismatches), index, recorded type and name,
    #  what the message names on both sides)
    "a renamed run": (
        [INPUT, *run_entries(1, "fetch", json(1))],
        [lambda m: m.run("fetch v2")],
        1,
        RunCommandMessage,
        "fetch",
        ["recorded RunCommandMessage named 'fetch'", "issued RunCommandMessage named 'fetch v2'"],
    ),
    "a renamed run after a matching one": (
        [INPUT, *run_entries(1, "a", json(1)), *run_entries(2, "b", json(2))],
        [lambda m: m.run("a"), lambda m: m.run("c")],
        2,
        RunCommandMessage,
        "b",
        ["named 'b'", "named 'c'"],
    ),
    "a call to another handler": (
        [INPUT, CALL_TO_A],
        [lambda m: m.call("Svc", "b", b"", key="k1")],
        1,
        CallCommandMessage,
        "",
        ["to Svc/a (key 'k1')", "to Svc/b (key 'k1')"],
    ),
    "a call to another object key": (
        [INPUT, CALL_TO_A],
        [lambda m: m.call("Svc", "a", b"", key="k2")],
        1,
        CallCommandMessage,
        "",
        ["to Svc/a (key 'k1')", "to Svc/a (key 'k2')"],
    ),
    "a send to another service": (
        [INPUT, OneWayCallCommandMessage(service_name="Svc", handler_name="a")],
        [lambda m: m.send("Other", "a", b"")],
        1,
        OneWayCallCommandMessage,
        "",
        ["to Svc/a", "to Other/a"],
    ),
    "another state key read": (
        [INPUT, GetEagerStateCommandMessage(key=b"a", value=json(1))],
        [lambda m: m.get_state("b")],
        1,
        GetEagerStateCommandMessage,
        "",
        ["for state key 'a'", "for state key 'b'"],
    ),
    "another state key written": (
        [INPUT, SetStateCommandMessage(key=b"a", value=json(1))],
        [lambda m: m.set_state("b", json(1))],
        1,
        SetStateCommandMessage,
        "",
        ["for state key 'a'", "for state key 'b'"],
    ),
    "another promise": (
        [INPUT, GetPromiseCommandMessage(key="p1", result_completion_id=1)],
        [lambda m: m.get_promise("p2")],
        1,
        GetPromiseCommandMessage,
        "",
        ["for promise 'p1'", "for promise 'p2'"],
    ),
    "another kind of command": (
        [INPUT, SleepCommandMessage(wake_up_time=1, result_completion_id=1, name="nap")],
        [lambda m: m.run("nap")],
        1,
        SleepCommandMessage,
        "nap",
        ["recorded SleepCommandMessage named 'nap'", "issued RunCommandMessage named 'nap'"],
    ),
}


@pytest.mark.parametrize("case", MISMATCHES, ids=str)
def test_journal_mismatch_names_the_index_and_both_sides(case: str) -> None:
    entries, calls, index, recorded_type, recorded_name, fragments = MISMATCHES[case]
    machine = state_machine(journal(*entries))
    *matching, mismatching = calls
    for call in matching:
        call(machine)
    with pytest.raises(JournalMismatch) as caught:
        mismatching(machine)
    mismatch = caught.value
    assert mismatch.code == 570
    assert (mismatch.index, mismatch.command_type, mismatch.command_name) == (
        index,
        recorded_type.TYPE,
        recorded_name,
    )
    text = str(mismatch)
    assert text.startswith(f"journal mismatch at command #{index}: "), text
    for fragment in fragments:
        assert fragment in text, text
    assert machine.take_output() == b"", "a mismatching command is not sent"
    # The driver ends the attempt with it: a 570 naming the recorded command.
    machine.fail(mismatch.code, text, related=mismatch)
    assert decode_frames(machine.take_output()) == [
        ErrorMessage(
            code=570,
            message=text,
            related_command_index=index,
            related_command_name=recorded_name,
            related_command_type=recorded_type.TYPE,
        )
    ]


# -- suspension: what the handler waits for -----------------------------------------------

SIGNAL_17 = -17  # signals are keyed by their index negated
ONE = Future(combinator_type=1)  # first completed of ...
ALL = Future(combinator_type=2)  # all completed of ...

SUSPENSIONS: dict[
    str, tuple[int, list[tuple[tuple[int | str, ...], bool]], bool, SuspensionMessage]
] = {
    # (version, awaits as (keys, require_all), cancellable, the message)
    "v7: one completion, cancellable": (
        7,
        [((1,), False)],
        True,
        SuspensionMessage(
            awaiting_on=Future(waiting_completions=[1], waiting_signals=[1], combinator_type=1)
        ),
    ),
    "v7: one completion, not cancellable": (
        7,
        [((1,), False)],
        False,
        SuspensionMessage(awaiting_on=Future(waiting_completions=[1], combinator_type=1)),
    ),
    "v7: a timer or an awakeable": (
        7,
        [((3, SIGNAL_17), False)],
        False,
        SuspensionMessage(
            awaiting_on=Future(waiting_completions=[3], waiting_signals=[17], combinator_type=1)
        ),
    ),
    "v7: a named signal": (
        7,
        [(("approved",), False)],
        False,
        SuspensionMessage(
            awaiting_on=Future(waiting_named_signals=["approved"], combinator_type=1)
        ),
    ),
    "v7: all of two, nested": (
        7,
        [((2, 1), True)],
        True,
        SuspensionMessage(
            awaiting_on=Future(
                waiting_signals=[1],
                nested_futures=[Future(waiting_completions=[1, 2], combinator_type=2)],
                combinator_type=1,
            )
        ),
    ),
    "v7: two awaits on the same id, listed once": (
        7,
        [((4,), False), ((4,), False)],
        False,
        SuspensionMessage(awaiting_on=Future(waiting_completions=[4], combinator_type=1)),
    ),
    "v6: flat lists, all-of flattened": (
        6,
        [((2, 1), True), ((SIGNAL_17,), False), (("approved",), False)],
        True,
        SuspensionMessage(
            waiting_completions=[1, 2], waiting_signals=[1, 17], waiting_named_signals=["approved"]
        ),
    ),
    "v5: the same flat lists": (
        5,
        [((1,), False)],
        True,
        SuspensionMessage(waiting_completions=[1], waiting_signals=[1]),
    ),
}


@pytest.mark.parametrize("case", SUSPENSIONS, ids=str)
def test_suspension_lists_what_is_awaited(case: str) -> None:
    version, awaits, cancellable, message = SUSPENSIONS[case]
    machine = state_machine(journal(INPUT), version=version)
    machine.suspend(awaits, cancellable)
    assert decode_frames(machine.take_output()) == [message]


def test_a_cancellation_acted_upon_is_no_longer_awaited() -> None:
    machine = state_machine(journal(INPUT), version=7)
    machine.take_cancel()
    machine.suspend([((1,), False)], cancellable=True)
    assert decode_frames(machine.take_output()) == [
        SuspensionMessage(awaiting_on=Future(waiting_completions=[1], combinator_type=1))
    ]


# -- endings --------------------------------------------------------------------------------


def _fail_after_run(machine: StateMachine, name: str) -> None:
    machine.run(name)
    machine.fail(500, "boom")


ENDINGS: dict[str, tuple[list[Message], Call, list[Message]]] = {
    # (journal entries, the ending call, frames out)
    "a value": (
        [INPUT],
        lambda m: m.write_output(json("hi")),
        [OutputCommandMessage(value=json("hi")), EndMessage()],
    ),
    "a terminal failure": (
        [INPUT],
        lambda m: m.write_output(Failure(code=409, message="no")),
        [OutputCommandMessage(failure=Failure(code=409, message="no")), EndMessage()],
    ),
    "an empty value": (
        [INPUT],
        lambda m: m.write_output(b""),
        [OutputCommandMessage(value=b""), EndMessage()],
    ),
    "an error after the input": (
        [INPUT],
        lambda m: m.fail(500, "boom", "trace", next_retry_delay_ms=250),
        [
            ErrorMessage(
                code=500,
                message="boom",
                stacktrace="trace",
                related_command_index=0,
                next_retry_delay=250,
            )
        ],
    ),
    "an error after a replayed run": (
        [INPUT, *run_entries(1, "a", json(1))],
        lambda m: _fail_after_run(m, "a"),
        [ErrorMessage(code=500, message="boom", related_command_index=1)],
    ),
}


@pytest.mark.parametrize("case", ENDINGS, ids=str)
def test_endings(case: str) -> None:
    entries, end, frames = ENDINGS[case]
    machine = state_machine(journal(*entries))
    end(machine)
    assert decode_frames(machine.take_output()) == frames


# -- malformed input: a typed ProtocolError (571) -----------------------------------------

SMALL_LIMIT = 64
BIG_INPUT = input_entry(b"x" * 100)
BIG_INPUT_SIZE = len(encode_frame(BIG_INPUT)) - 8

PROTOCOL_ERRORS: dict[str, tuple[bytes, str, str]] = {
    # (request body, the call that raises: "receive" or "close_input", the message)
    "a truncated frame": (
        journal(INPUT)[:-2],
        "close_input",
        "stream ended in the middle of a message",
    ),
    "a truncated header": (journal(INPUT) + b"\x04\x00\x00", "close_input", "3 of 8 header bytes"),
    "an unknown type id": (
        journal(INPUT) + frame(0x0BAD, b""),
        "receive",
        "unknown message type 0x0BAD",
    ),
    "an unknown notification type id": (
        journal(INPUT) + frame(0x8BAD, b""),
        "receive",
        "unknown message type 0x8BAD",
    ),
    "a message over the size limit": (
        encode_frame(start(1)) + encode_frame(BIG_INPUT),
        "receive",
        f"message of {BIG_INPUT_SIZE} bytes exceeds the maximum message size of "
        f"{SMALL_LIMIT} bytes",
    ),
    "a header claiming 4 GiB": (
        frame(0x0000, b"")[:4] + b"\xff\xff\xff\xff",
        "receive",
        "message of 4294967295 bytes exceeds the maximum message size",
    ),
    "malformed protobuf": (
        frame(0x0000, b"\x12\x05abc"),
        "receive",
        "truncated field StartMessage.debug_id",
    ),
    "no StartMessage first": (encode_frame(INPUT), "receive", "expected StartMessage first"),
    "a journal not starting with the input": (
        journal(*run_entries(1, "a", json(1))),
        "receive",
        "its first command must be InputCommandMessage",
    ),
    "a command after the replayed journal": (
        journal(INPUT) + encode_frame(RunCommandMessage(result_completion_id=1, name="a")),
        "receive",
        "received RunCommandMessage after the replayed journal ended",
    ),
    "an ack for a run nobody proposed": (
        journal(INPUT) + encode_frame(ProposeRunCompletionAckMessage(completion_id=9)),
        "receive",
        "ProposeRunCompletionAck for completion 9, which no run proposed",
    ),
    "fewer entries than announced": (
        journal(INPUT, known=3),
        "close_input",
        "expected 3 entries after StartMessage, got 1",
    ),
    "the end of the request before StartMessage": (
        b"",
        "close_input",
        "the request ended before StartMessage arrived",
    ),
}


@pytest.mark.parametrize("case", PROTOCOL_ERRORS, ids=str)
def test_malformed_input_is_a_protocol_error(case: str) -> None:
    body, raised_by, message = PROTOCOL_ERRORS[case]
    machine = StateMachine(_V6, max_message_size=SMALL_LIMIT)
    if raised_by == "receive":
        with pytest.raises(ProtocolError) as caught:
            machine.receive(body)
    else:
        machine.receive(body)  # whole frames so far: nothing wrong yet
        with pytest.raises(ProtocolError) as caught:
            machine.close_input()
    error = caught.value
    assert type(error) is ProtocolError and error.code == 571
    assert message in error.message, error.message
    assert message in str(error)


def test_the_same_journal_in_one_chunk_or_byte_by_byte() -> None:
    body = journal(INPUT, *run_entries(1, "a", json(1)), *run_entries(2, "b", json(2)))
    whole = state_machine(body)
    piecewise = StateMachine(_V6)
    for i in range(len(body)):
        piecewise.receive(body[i : i + 1])
    piecewise.close_input()
    for machine in (whole, piecewise):
        assert [machine.run("a"), machine.run("b"), machine.run("c")] == [
            (False, 1),
            (False, 2),
            (True, 3),
        ]
        assert [machine.resolve_one(1), machine.resolve_one(2)] == [json(1), json(2)]
        assert decode_frames(machine.take_output()) == [
            RunCommandMessage(result_completion_id=3, name="c")
        ]


def test_bytes_after_the_end_of_the_body_are_refused() -> None:
    machine = state_machine(journal(INPUT))  # the body has ended
    late = encode_frame(SleepCompletionNotificationMessage(completion_id=1, void=True))
    with pytest.raises(ProtocolError, match="after the request body had ended"):
        machine.receive(late)
