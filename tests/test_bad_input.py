"""Bad input: whatever a peer sends, the endpoint answers clearly and keeps serving.

Malformed frames, truncated bodies, oversized and unknown messages, commands out of order,
journals that do not match the code, invalid UTF-8, huge inputs, wrong content types, paths
and methods: each gets an ErrorMessage (571 protocol violation, 570 journal mismatch) in a
200 answer, or an HTTP 4xx with a readable text. Never an exception out of the ASGI app,
never a hang (every request runs under a timeout), never an allocation sized by what a
frame header claims; and the next good request is served.

Driven in-process through the ASGI app (fast, exact) and, for a representative subset,
over real HTTP/2 cleartext to a ``python -m framework serve`` child process, where framing
problems meet the real transport. Hypothesis fuzzes the frame decoder, the journal state
machine and the endpoint with random and mutated journals.
"""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framework._dev.service_process import ServiceProcess
from framework._journal import StateMachine
from framework._protocol import (
    MESSAGE_TYPES,
    CustomEntry,
    EndMessage,
    ErrorMessage,
    FrameDecoder,
    GetEagerStateCommandMessage,
    GetEagerStateKeysCommandMessage,
    GetLazyStateCommandMessage,
    GetLazyStateCompletionNotificationMessage,
    GetLazyStateKeysCommandMessage,
    GetLazyStateKeysCompletionNotificationMessage,
    Header,
    InputCommandMessage,
    Message,
    OutputCommandMessage,
    ProposeRunCompletionAckMessage,
    ProtocolError,
    ProtocolVersion,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    SetStateCommandMessage,
    SignalNotificationMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    StartMessage,
    StateEntry,
    decode_message,
    encode_frame,
)
from tests.bad_input_services import SMALL_MAX_MESSAGE_SIZE, app, small_app
from tests.journals import (
    TERMINAL_MESSAGES,
    Answer,
    ASGIApp,
    call_asgi,
    decode_frames,
    frame,
    journal,
    json,
    start,
)

ROOT = Path(__file__).resolve().parents[1]
CONTENT_TYPE = "application/vnd.restate.invocation.v6"
RESTATE_HEADERS = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
FOUR_GIB_HEADER = struct.pack(">HHI", 0x0000, 0, 0xFFFF_FFFF)
REQUEST_TIMEOUT = 10.0

GOOD = journal(InputCommandMessage(value=json("still here")))


# -- the endpoint in-process (tests/journals.py: call_asgi) -------------------------------


def invoke(
    handler: str,
    body: bytes | Sequence[bytes],
    asgi: ASGIApp = app,
    *,
    headers: dict[str, str] | None = None,
    server_closes_after_answer: bool = False,
) -> Answer:
    """Invoke ``handler`` in-process; the endpoint must not answer before the body is in.

    With ``server_closes_after_answer`` the request side stays open after the body, like a
    Restate server's on HTTP/2, and closes once the endpoint answered with a terminal frame
    (or went quiet for a moment).
    """
    request_headers = RESTATE_HEADERS if headers is None else headers
    reply = call_asgi(
        asgi,
        f"/invoke/{handler}",
        body,
        headers=request_headers,
        input_open_for=0.3 if server_closes_after_answer else 0.0,
        close_input_on_answer=server_closes_after_answer,
    )
    if reply.status == 200:
        assert reply.headers["content-type"] == request_headers["content-type"], reply.headers
    return reply


def error_of(reply: Answer) -> ErrorMessage:
    """The one ErrorMessage a failed attempt answers with."""
    frames = reply.frames
    assert len(frames) == 1 and isinstance(frames[0], ErrorMessage), frames
    return frames[0]


def assert_still_serves(asgi: ASGIApp = app) -> None:
    reply = invoke("BadInput/echo", GOOD, asgi)
    assert reply.frames == [OutputCommandMessage(value=json("still here")), EndMessage()]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


# -- framing ----------------------------------------------------------------------------

INPUT = InputCommandMessage(value=json("hi"))
OVERSIZED = frame(InputCommandMessage.TYPE, b"\x00" * (SMALL_MAX_MESSAGE_SIZE + 1))

FRAMING = {
    "noise": (b"\xde\xad\xbe\xef" * 8, "exceeds the maximum message size"),
    "empty body": (b"", "the request ended before StartMessage arrived"),
    "cut header": (journal(INPUT) + b"\x04\x00\x00", "3 of 8 header bytes"),
    "cut body": (journal(INPUT)[:-2], "stream ended in the middle of a message"),
    "4 GiB length": (FOUR_GIB_HEADER, "message of 4294967295 bytes exceeds"),
    "over max_message_size": (
        encode_frame(start(1)) + OVERSIZED,
        f"message of {SMALL_MAX_MESSAGE_SIZE + 1} bytes exceeds the maximum message size "
        f"of {SMALL_MAX_MESSAGE_SIZE} bytes",
    ),
    "unknown type id": (journal(INPUT) + frame(0x0BAD, b""), "unknown message type 0x0BAD"),
    "unknown type id in the journal": (
        encode_frame(start(2)) + frame(0x0BAD, b"") + encode_frame(INPUT),
        "unknown message type 0x0BAD",
    ),
    "unknown notification type": (
        journal(INPUT) + frame(0x8BAD, b""),
        "unknown message type 0x8BAD",
    ),
    "malformed protobuf": (frame(0x0000, b"\x12\x05abc"), "truncated field StartMessage.debug_id"),
    "wire type clash": (
        encode_frame(start(1)) + frame(0x0400, b"\x60\x01"),  # name (12) as a varint
        "InputCommandMessage.name (number 12) has wire type 0",
    ),
    "cut varint": (encode_frame(start(1)) + frame(0x0400, b"\x72\xff"), "truncated varint"),
}


@pytest.mark.parametrize("case", FRAMING, ids=str)
@pytest.mark.parametrize("chunk", [None, 3], ids=["one chunk", "3-byte chunks"])
def test_framing_errors_are_protocol_violations(case: str, chunk: int | None) -> None:
    body, message = FRAMING[case]
    reply = invoke("BadInput/echo", body if chunk is None else chunked(body, chunk), small_app)
    error = error_of(reply)
    assert error.code == 571 and message in error.message, error
    assert_still_serves(small_app)


@pytest.mark.parametrize("case", ["noise", "4 GiB length", "unknown type id", "cut body"])
def test_framing_errors_while_the_server_keeps_its_side_open(case: str) -> None:
    # On HTTP/2 the Restate server keeps sending: the endpoint must answer first (no
    # deadlock) and end its response only once the server closed its side.
    body, message = FRAMING[case]
    reply = invoke("BadInput/echo", body, server_closes_after_answer=True)
    error = error_of(reply)
    assert error.code == 571 and message in error.message


# -- commands out of order --------------------------------------------------------------

RUN = RunCommandMessage(result_completion_id=1, name="step")
RAN = RunCompletionNotificationMessage(completion_id=1, value=json("ran"))

OUT_OF_ORDER = {
    "command before StartMessage": (
        encode_frame(INPUT) + journal(INPUT),
        "expected StartMessage first, got InputCommandMessage",
    ),
    "notification before StartMessage": (
        encode_frame(RAN),
        "expected StartMessage first, got RunCompletionNotificationMessage",
    ),
    "StartMessage twice": (journal(INPUT) + encode_frame(start(1)), "unexpected StartMessage"),
    "EndMessage from the server": (
        journal(INPUT) + encode_frame(EndMessage()),
        "unexpected EndMessage",
    ),
    "InputCommand twice": (journal(INPUT, INPUT), "second InputCommandMessage"),
    "journal without InputCommand": (
        journal(RUN, RAN),
        "the journal starts with RunCommandMessage: its first command must be InputCommandMessage",
    ),
    "command after the replayed journal": (
        journal(INPUT) + encode_frame(RUN),
        "received RunCommandMessage after the replayed journal ended",
    ),
    "ack for a run nobody proposed": (
        journal(INPUT) + encode_frame(ProposeRunCompletionAckMessage(completion_id=9)),
        "ProposeRunCompletionAck for completion 9, which no run proposed",
    ),
    "fewer entries than announced": (
        journal(INPUT, known=3),
        "expected 3 entries after StartMessage, got 1",
    ),
}


@pytest.mark.parametrize("case", OUT_OF_ORDER, ids=str)
def test_commands_out_of_order_are_protocol_violations(case: str) -> None:
    body, message = OUT_OF_ORDER[case]
    error = error_of(invoke("BadInput/step", body))
    assert error.code == 571 and message in error.message, error
    assert_still_serves()


@pytest.mark.parametrize(
    "bad",
    [encode_frame(RUN), frame(0x0BAD, b""), b"\x00\x00\x00"],
    ids=["a command", "an unknown type", "a cut header"],
)
@pytest.mark.parametrize("version", [6, 7])
def test_bad_frames_arriving_while_the_handler_runs(bad: bytes, version: int) -> None:
    # The journal is complete, so the handler starts; the bad bytes come in the next DATA
    # frame, the last of the request. The attempt ends at once (no wait for more input).
    content_type = f"application/vnd.restate.invocation.v{version}"
    began = time.monotonic()
    reply = invoke(
        "BadInput/nap",
        [journal(INPUT), bad],
        headers={"content-type": content_type, "accept": content_type},
    )
    assert time.monotonic() - began < 5
    frames = reply.frames
    assert isinstance(frames[-1], ErrorMessage) and frames[-1].code == 571, frames
    assert_still_serves()


def test_a_notification_nobody_waits_for_is_ignored() -> None:
    # It may belong to a command the handler has not re-issued yet, so it is no error.
    stray = RunCompletionNotificationMessage(completion_id=99, value=json("stray"))
    reply = invoke("BadInput/echo", journal(INPUT, stray, SignalNotificationMessage(idx=40)))
    assert reply.frames == [OutputCommandMessage(value=json("hi")), EndMessage()]


def test_custom_entries_count_but_are_not_interpreted() -> None:
    reply = invoke("BadInput/echo", journal(INPUT, CustomEntry(type_id=0xFC42, payload=b"\xff")))
    assert reply.frames == [OutputCommandMessage(value=json("hi")), EndMessage()]


# -- journals that do not match the code ------------------------------------------------

MISMATCHES = {
    "another command type": (
        "BadInput/step",
        journal(INPUT, SleepCommandMessage(result_completion_id=1, wake_up_time=1)),
        SleepCommandMessage.TYPE,
        "",
        "recorded SleepCommandMessage named '', but the handler now issued RunCommandMessage "
        "named 'step'",
    ),
    "another step name": (
        "BadInput/step",
        journal(INPUT, RunCommandMessage(result_completion_id=1, name="renamed"), RAN),
        RunCommandMessage.TYPE,
        "renamed",
        "named 'renamed', but the handler now issued RunCommandMessage named 'step'",
    ),
    "another state key (eager)": (
        "BadInputStore/read",
        journal(INPUT, GetEagerStateCommandMessage(key=b"other", value=json("v")), key="o"),
        GetEagerStateCommandMessage.TYPE,
        "",
        "for state key 'other', but the handler now issued GetEagerStateCommandMessage "
        "named '' for state key 'k'",
    ),
    "another state key (lazy)": (
        "BadInputStore/read",
        journal(
            INPUT,
            GetLazyStateCommandMessage(key=b"other", result_completion_id=1),
            GetLazyStateCompletionNotificationMessage(completion_id=1, value=json("v")),
            key="o",
        ),
        GetLazyStateCommandMessage.TYPE,
        "",
        "for state key 'other'",
    ),
    "a state key that is not UTF-8": (
        "BadInputStore/read",
        journal(INPUT, GetEagerStateCommandMessage(key=b"\xff", value=json("v")), key="o"),
        GetEagerStateCommandMessage.TYPE,
        "",
        "for state key '\ufffd'",
    ),
    "another key written": (
        "BadInputStore/write",
        journal(
            InputCommandMessage(value=json("v")), SetStateCommandMessage(key=b"other"), key="o"
        ),
        SetStateCommandMessage.TYPE,
        "",
        "recorded SetStateCommandMessage named '' for state key 'other', but the handler now "
        "issued SetStateCommandMessage named '' for state key 'k'",
    ),
    "a step the code no longer takes": (
        "BadInput/echo",
        journal(INPUT, RUN, RAN),
        RunCommandMessage.TYPE,
        "step",
        "the handler now issued OutputCommandMessage",
    ),
}


@pytest.mark.parametrize("case", MISMATCHES, ids=str)
def test_a_journal_that_does_not_match_the_code_is_570_naming_the_command(case: str) -> None:
    handler, body, command_type, command_name, message = MISMATCHES[case]
    error = error_of(invoke(handler, body))
    assert error.code == 570, error
    assert message in error.message, error.message
    assert error.related_command_index == 1
    assert error.related_command_type == command_type
    assert error.related_command_name == command_name
    assert_still_serves()


# -- invalid UTF-8 where strings belong -------------------------------------------------


def _input_with_header(key: bytes, value: bytes) -> bytes:
    header = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    return frame(InputCommandMessage.TYPE, b"\x0a" + bytes([len(header)]) + header)


NOT_UTF8 = {
    "header name": (
        "BadInput/echo",
        encode_frame(start(1)) + _input_with_header(b"\xffx", b"v"),
        "invalid UTF-8 in string field Header.key",
    ),
    "header value": (
        "BadInput/echo",
        encode_frame(start(1)) + _input_with_header(b"authorization", b"Bearer \xc3"),
        "invalid UTF-8 in string field Header.value",
    ),
    "step name": (
        "BadInput/step",
        encode_frame(start(2))
        + encode_frame(INPUT)
        + frame(RunCommandMessage.TYPE, b"\x62\x02\xc3\x28"),
        "invalid UTF-8 in string field RunCommandMessage.name",
    ),
    "object key": (
        "BadInputStore/read",
        frame(StartMessage.TYPE, b"\x18\x01\x32\x01\xff") + encode_frame(INPUT),
        "invalid UTF-8 in string field StartMessage.key",
    ),
    "named signal": (
        "BadInput/nap",
        journal(INPUT) + frame(SignalNotificationMessage.TYPE, b"\x1a\x01\xfe"),
        "invalid UTF-8 in string field SignalNotificationMessage.name",
    ),
    "state keys listed (replayed)": (
        "BadInputStore/keys",
        journal(INPUT, GetEagerStateKeysCommandMessage(value=[b"ok", b"\xff"]), key="o"),
        "a state key in the journal is not UTF-8",
    ),
    "state keys listed (lazy)": (
        "BadInputStore/keys",
        journal(
            INPUT,
            GetLazyStateKeysCommandMessage(result_completion_id=1),
            GetLazyStateKeysCompletionNotificationMessage(completion_id=1, state_keys=[b"\xc0"]),
            key="o",
            partial_state=True,
        ),
        "a state key in the journal is not UTF-8",
    ),
}


@pytest.mark.parametrize("case", NOT_UTF8, ids=str)
def test_invalid_utf8_in_strings_is_a_protocol_violation(case: str) -> None:
    handler, body, message = NOT_UTF8[case]
    error = error_of(invoke(handler, body))
    assert error.code == 571 and message in error.message, error
    assert_still_serves()


def test_invalid_utf8_in_the_input_fails_the_invocation_for_good() -> None:
    # The input is the user's bytes, not the protocol's: the handler's serde rejects it.
    reply = invoke("BadInput/echo", journal(InputCommandMessage(value=b'"\xff\xfe"')))
    output, end = reply.frames
    assert isinstance(output, OutputCommandMessage) and output.failure is not None
    assert (
        output.failure.code == 400 and "invalid input for BadInput/echo" in output.failure.message
    )
    assert end == EndMessage()


def test_eager_state_with_a_key_that_is_not_utf8_does_not_break_other_keys() -> None:
    state = [StateEntry(key=b"\xff\xfe", value=json("x")), StateEntry(key=b"k", value=json("v"))]
    reply = invoke("BadInputStore/read", journal(INPUT, key="o", state_map=state))
    assert reply.frames[-2:] == [OutputCommandMessage(value=json("v")), EndMessage()]


# -- sizes ------------------------------------------------------------------------------


def test_a_20_mb_json_input_is_handled_within_bounds() -> None:
    items = ["x" * 90] * 210_000
    payload = json(items)
    assert 19_000_000 < len(payload) < 32 * 1024 * 1024  # the default maximum message size
    body = journal(InputCommandMessage(value=payload))
    chunks = chunked(body, 64 * 1024)  # as an HTTP/2 server hands them over
    tracemalloc.start()
    try:
        began = time.monotonic()
        reply = invoke("BadInput/count", chunks)
        elapsed = time.monotonic() - began
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply.frames == [OutputCommandMessage(value=json(len(items))), EndMessage()]
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert peak < 6 * len(body), f"peak {peak / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB body"


def test_an_input_over_max_message_size_is_refused_clearly() -> None:
    payload = json(["x" * 1000] * 100)  # 100 kB > 64 KiB
    error = error_of(
        invoke("BadInput/count", journal(InputCommandMessage(value=payload)), small_app)
    )
    assert error.code == 571
    assert f"exceeds the maximum message size of {SMALL_MAX_MESSAGE_SIZE} bytes" in error.message
    assert_still_serves(small_app)


@pytest.mark.parametrize(
    "head",
    [FOUR_GIB_HEADER, struct.pack(">HHI", 0x0000, 0, 30 * 1024 * 1024)],
    ids=["4 GiB (over the limit)", "30 MiB (under the limit), never sent"],
)
def test_a_claimed_length_is_not_allocated(head: bytes) -> None:
    # The header claims a huge frame; 8 MB of other bytes follow, then the stream ends.
    filler = b"\x00" * (1024 * 1024)
    chunks = [head] + [filler] * 8
    tracemalloc.start()
    try:
        reply = invoke("BadInput/echo", chunks)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error_of(reply).code == 571
    # Bytes that did arrive may be buffered (up to the claimed length), never the claim.
    limit = 12 * 1024 * 1024 if head != FOUR_GIB_HEADER else 4 * 1024 * 1024
    assert peak < limit, f"peak {peak / 1e6:.1f} MB"
    assert_still_serves()


# -- HTTP-level mistakes ----------------------------------------------------------------

HTTP_MISTAKES = {
    "json content type": (
        "POST",
        "/invoke/BadInput/echo",
        {"content-type": "application/json"},
        415,
        "did not come from a Restate server",
    ),
    "no content type": ("POST", "/invoke/BadInput/echo", {}, 415, "has no content-type"),
    "protocol v4": (
        "POST",
        "/invoke/BadInput/echo",
        {"content-type": "application/vnd.restate.invocation.v4"},
        415,
        "supports protocol versions 5 to 7",
    ),
    "protocol v99": (
        "POST",
        "/invoke/BadInput/echo",
        {"content-type": "application/vnd.restate.invocation.v99"},
        415,
        "unsupported service protocol version",
    ),
    "unknown service": ("POST", "/invoke/Nope/echo", RESTATE_HEADERS, 404, "no handler Nope/echo"),
    "unknown handler": (
        "POST",
        "/invoke/BadInput/nope",
        RESTATE_HEADERS,
        404,
        "no handler BadInput/nope",
    ),
    "path too short": ("POST", "/invoke/BadInput", RESTATE_HEADERS, 404, "Not Found"),
    "path too long": ("POST", "/invoke/BadInput/echo/more", RESTATE_HEADERS, 404, "Not Found"),
    "unknown path": ("GET", "/nowhere", {}, 404, "Not Found"),
    "GET an invocation": (
        "GET",
        "/invoke/BadInput/echo",
        RESTATE_HEADERS,
        405,
        "invocations are POST requests",
    ),
    "PUT an invocation": (
        "PUT",
        "/invoke/BadInput/echo",
        RESTATE_HEADERS,
        405,
        "invocations are POST requests",
    ),
    "DELETE an invocation": (
        "DELETE",
        "/invoke/BadInput/echo",
        RESTATE_HEADERS,
        405,
        "invocations are POST requests",
    ),
    "POST discovery": ("POST", "/discover", {}, 405, "Method Not Allowed"),
    "PATCH health": ("PATCH", "/health", {}, 405, "Method Not Allowed"),
    "discovery of an unknown manifest": (
        "GET",
        "/discover",
        {"accept": "application/json"},
        415,
        "unsupported discovery request",
    ),
}


@pytest.mark.parametrize("case", HTTP_MISTAKES, ids=str)
def test_http_mistakes_get_a_readable_4xx(case: str) -> None:
    method, path, headers, status, text = HTTP_MISTAKES[case]
    ours = path.count("/") == 3 and path.startswith("/invoke/")  # our route, not Starlette's
    # Our route must not answer before the request body is in (call_asgi checks that).
    reply = call_asgi(
        app,
        path,
        [GOOD[:10], GOOD[10:]],
        method=method,
        headers=headers,
        allow_early_answer=not ours,
    )
    assert reply.status == status, reply
    assert reply.headers["content-type"].startswith("text/plain"), reply.headers
    assert text in reply.text, reply.text
    assert_still_serves()


@pytest.mark.parametrize("case", ["unknown path", "POST discovery"])
def test_answers_outside_the_invoke_path_wait_for_the_request_body(case: str) -> None:
    method, path, headers, _status, _text = HTTP_MISTAKES[case]
    # call_asgi fails if the app answers before the request body is in.
    call_asgi(app, path, [GOOD[:10], GOOD[10:]], method=method, headers=headers)


# -- fuzzing ----------------------------------------------------------------------------

STATE = [StateEntry(key=b"k", value=json("v"))]
SEEDS: list[tuple[str, list[Message], dict[str, Any]]] = [
    (
        "BadInput/echo",
        [InputCommandMessage(headers=[Header(key="h", value="v")], value=json("a"))],
        {},
    ),
    ("BadInput/step", [INPUT], {}),
    ("BadInput/step", [INPUT, RUN, RAN], {}),
    ("BadInput/step", [INPUT, RUN, ProposeRunCompletionAckMessage(completion_id=1)], {}),
    (
        "BadInput/nap",
        [
            INPUT,
            SleepCommandMessage(result_completion_id=1, wake_up_time=5),
            SleepCompletionNotificationMessage(completion_id=1, void=True),
        ],
        {},
    ),
    ("BadInput/nap", [INPUT, SignalNotificationMessage(idx=1, void=True)], {}),
    ("BadInput/count", [InputCommandMessage(value=json(list(range(40))))], {}),
    ("BadInputStore/read", [INPUT], {"key": "o", "state_map": STATE}),
    (
        "BadInputStore/read",
        [
            INPUT,
            GetLazyStateCommandMessage(key=b"k", result_completion_id=1),
            GetLazyStateCompletionNotificationMessage(completion_id=1, void=True),
        ],
        {"key": "o", "partial_state": True},
    ),
    (
        "BadInputStore/keys",
        [
            INPUT,
            GetLazyStateKeysCommandMessage(result_completion_id=1),
            GetLazyStateKeysCompletionNotificationMessage(completion_id=1, state_keys=[b"a", b"b"]),
        ],
        {"key": "o", "partial_state": True},
    ),
    (
        "BadInputStore/write",
        [
            InputCommandMessage(value=json("v")),
            SetStateCommandMessage(key=b"k", value=json("v")),
            CustomEntry(type_id=0xFC01, payload=b"\x08\x01"),
        ],
        {"key": "o"},
    ),
]
_IDS = sorted(MESSAGE_TYPES)


@st.composite
def mutated_journals(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """(handler, request body, protocol version): a valid journal, then 0-4 mutations."""
    handler, entries, start_fields = draw(st.sampled_from(SEEDS))
    frames = [encode_frame(m) for m in (start(len(entries), **start_fields), *entries)]
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(frames) - 1)) if frames else 0
        op = draw(
            st.sampled_from(
                [
                    "dup",
                    "drop",
                    "swap",
                    "type",
                    "length",
                    "flags",
                    "splice",
                    "foreign",
                    "flip",
                    "cut",
                    "noise",
                ]
            )
        )
        if not frames:
            frames = [draw(st.binary(max_size=32))]
        elif op == "dup":
            frames.insert(i, frames[i])
        elif op == "drop":
            del frames[i]
        elif op == "swap":
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif op in ("type", "length", "flags") and len(frames[i]) >= 8:
            type_id, flags, length = struct.unpack(">HHI", frames[i][:8])
            if op == "type":
                type_id = draw(st.one_of(st.sampled_from(_IDS), st.integers(0, 0xFFFF)))
            elif op == "flags":
                flags = draw(st.integers(0, 0xFFFF))
            else:
                length = draw(
                    st.one_of(
                        st.integers(0, 0xFFFF_FFFF), st.integers(max(0, length - 4), length + 4)
                    )
                )
            frames[i] = struct.pack(">HHI", type_id, flags, length) + frames[i][8:]
        elif op == "splice":
            frames.insert(i, draw(st.binary(max_size=24)))
        elif op == "foreign":
            _h, other, _f = draw(st.sampled_from(SEEDS))
            frames.insert(i, encode_frame(draw(st.sampled_from(other))))
        else:
            data = b"".join(frames)
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
            elif op == "cut":
                data = data[:at]
            else:
                data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
            frames = [data]
    return handler, b"".join(frames), draw(st.sampled_from([5, 6, 7]))


FUZZ = settings(
    max_examples=800,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@FUZZ
@given(case=mutated_journals(), chunk=st.integers(1, 97))
def test_fuzz_decoder_and_machine_raise_only_protocol_errors(
    case: tuple[str, bytes, int], chunk: int
) -> None:
    _handler, data, version = case
    decoder = FrameDecoder(max_message_size=4096)
    machine = StateMachine(ProtocolVersion(version), max_message_size=4096)
    for target in ("decoder", "machine"):
        try:
            for piece in chunked(data, chunk):
                if target == "machine":
                    machine.receive(piece)
                    continue
                decoder.feed(piece)
                for type_id, _flags, payload in iter(decoder.next_frame, None):
                    with contextlib.suppress(ProtocolError):
                        decode_message(type_id, payload)
            if target == "machine":
                machine.close_input()
            else:
                decoder.close()
        except ProtocolError as error:
            assert error.code == 571 and error.message


@FUZZ
@given(case=mutated_journals(), chunk=st.integers(1, 4096))
def test_fuzz_endpoint_answers_every_mutated_journal(
    case: tuple[str, bytes, int], chunk: int
) -> None:
    handler, data, version = case
    content_type = f"application/vnd.restate.invocation.v{version}"
    # call_asgi fails if the app answers before the request body is in.
    reply = call_asgi(
        app,
        f"/invoke/{handler}",
        chunked(data, chunk),
        headers={"content-type": content_type, "accept": content_type},
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type
    frames = reply.frames
    ends = [f for f in frames if isinstance(f, TERMINAL_MESSAGES)]
    assert len(ends) == 1 and frames[-1] is ends[0], frames
    if isinstance(ends[0], EndMessage):
        assert isinstance(frames[-2], OutputCommandMessage)


# -- over real HTTP/2 cleartext ---------------------------------------------------------


@dataclass
class Served:
    service: ServiceProcess
    small: ServiceProcess
    client: httpx.Client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("bad-input")
    service = ServiceProcess(
        "tests.bad_input_services:app", log_path=directory / "service.log", cwd=ROOT
    )
    small = ServiceProcess(
        "tests.bad_input_services:small_app", log_path=directory / "small.log", cwd=ROOT
    )
    with service, small, httpx.Client(http1=False, http2=True, timeout=REQUEST_TIMEOUT) as client:
        yield Served(service, small, client)
        logs = service.log_text() + small.log_text()
    for crash in ("Traceback", "Exception in ASGI", "Unhandled exception", "KeyError"):
        assert crash not in logs, logs[-4000:]


def post(client: httpx.Client, url: str, content: Any, **headers: str) -> httpx.Response:
    return client.post(url, content=content, headers={**RESTATE_HEADERS, **headers})


def frames_of(response: httpx.Response) -> list[Message]:
    assert response.status_code == 200, response.text
    return decode_frames(response.content)


def h2c_still_serves(served: Served, base: str | None = None) -> None:
    url = f"{base or served.service.url}/invoke/BadInput/echo"
    assert frames_of(post(served.client, url, GOOD)) == [
        OutputCommandMessage(value=json("still here")),
        EndMessage(),
    ]


def vm_rss_kib(pid: int | None) -> int:
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    "case",
    # Cases that fail before the journal is complete: over HTTP/2 a bad tail may arrive
    # after the handler already answered, and is then rightly ignored.
    ["noise", "cut body", "unknown type id in the journal", "malformed protobuf", "cut varint"],
)
def test_h2c_framing_errors(served: Served, case: str) -> None:
    body, message = FRAMING[case]
    response = post(served.client, f"{served.service.url}/invoke/BadInput/echo", body)
    [error] = frames_of(response)
    assert isinstance(error, ErrorMessage) and error.code == 571 and message in error.message
    h2c_still_serves(served)


def test_h2c_4gib_header_with_a_body_behind_it(served: Served) -> None:
    # The header is refused at once; the 16 MB behind it are read and dropped (answering
    # before the body is in would break the HTTP/2 connection, and every stream on it).
    url = f"{served.service.url}/invoke/BadInput/echo"
    pid = served.service.pid
    h2c_still_serves(served)
    before = vm_rss_kib(pid)
    response = post(served.client, url, FOUR_GIB_HEADER + b"\x00" * (16 * 1024 * 1024))
    [error] = frames_of(response)
    assert isinstance(error, ErrorMessage) and "4294967295 bytes exceeds" in error.message
    claimed = struct.pack(">HHI", 0x0000, 0, 30 * 1024 * 1024) + b"\x00" * 1024
    [error] = frames_of(post(served.client, url, claimed))
    assert isinstance(error, ErrorMessage) and "middle of a message" in error.message
    grown = vm_rss_kib(pid) - before
    assert grown < 24 * 1024, f"RSS grew by {grown} KiB"
    h2c_still_serves(served)


def test_h2c_bad_frame_after_the_journal_ends_the_attempt_promptly(served: Served) -> None:
    def body() -> Iterator[bytes]:
        yield journal(INPUT)
        time.sleep(0.2)  # the handler is running (waiting on its timer) by now
        yield encode_frame(RUN)

    began = time.monotonic()
    response = post(served.client, f"{served.service.url}/invoke/BadInput/nap", body())
    frames = frames_of(response)
    assert isinstance(frames[-1], ErrorMessage) and frames[-1].code == 571
    assert "after the replayed journal ended" in frames[-1].message
    assert time.monotonic() - began < 5
    h2c_still_serves(served)


def test_h2c_huge_input_within_and_over_the_limit(served: Served) -> None:
    items = ["x" * 90] * 210_000
    body = journal(InputCommandMessage(value=json(items)))
    frames = frames_of(post(served.client, f"{served.service.url}/invoke/BadInput/count", body))
    assert frames == [OutputCommandMessage(value=json(len(items))), EndMessage()]
    small = f"{served.small.url}/invoke/BadInput/count"
    [error] = frames_of(post(served.client, small, body))
    assert isinstance(error, ErrorMessage) and error.code == 571
    assert f"maximum message size of {SMALL_MAX_MESSAGE_SIZE} bytes" in error.message
    h2c_still_serves(served, served.small.url)


def test_h2c_mismatch_and_out_of_order(served: Served) -> None:
    url = f"{served.service.url}/invoke/BadInput/step"
    [error] = frames_of(post(served.client, url, OUT_OF_ORDER["InputCommand twice"][0]))
    assert isinstance(error, ErrorMessage) and error.code == 571
    _handler, body, command_type, name, _message = MISMATCHES["another step name"]
    [error] = frames_of(post(served.client, url, body))
    assert isinstance(error, ErrorMessage) and error.code == 570
    assert (error.related_command_type, error.related_command_name) == (command_type, name)
    h2c_still_serves(served)


@pytest.mark.parametrize(
    "case",
    [
        "json content type",
        "protocol v4",
        "unknown service",
        "unknown path",
        "PUT an invocation",
        "GET an invocation",
        "discovery of an unknown manifest",
    ],
)
def test_h2c_http_mistakes(served: Served, case: str) -> None:
    method, path, headers, status, text = HTTP_MISTAKES[case]
    body = GOOD
    response = served.client.request(
        method, f"{served.service.url}{path}", content=body, headers=headers
    )
    assert response.status_code == status and text in response.text
    h2c_still_serves(served)


def test_h2c_path_that_is_not_utf8(served: Served) -> None:
    response = post(served.client, f"{served.service.url}/invoke/%FF%FE/echo", GOOD)
    assert response.status_code == 404
    h2c_still_serves(served)


def test_http11_request_response_mode_too(served: Served) -> None:
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:  # HTTP/1.1
        url = f"{served.service.url}/invoke/BadInput/echo"
        [error] = frames_of(post(client, url, FOUR_GIB_HEADER + b"\x00" * 4096))
        assert isinstance(error, ErrorMessage) and error.code == 571
        [error] = frames_of(post(client, url, journal(INPUT, INPUT)))
        assert isinstance(error, ErrorMessage) and "second InputCommandMessage" in error.message
        response = post(client, url, GOOD)
        assert frames_of(response)[0] == OutputCommandMessage(value=json("still here"))
