"""Builders the tests share for talking the service protocol without a Restate server.

One place for what many tests need and used to write for themselves:

- request bodies: ``journal(*entries)`` is a StartMessage announcing the entries, then the
  entries, all framed; ``start``, ``frame`` (a raw frame, for malformed input), ``json`` and
  the entry helpers ``input_entry``, ``run_entries`` and ``eager_state`` fill it in;
- answers: ``decode_frames(body)`` turns a response body back into messages (and checks
  that it does not stop inside a frame); ``decode_frames_with_flags`` keeps the header flags;
- a sans-IO journal: ``state_machine(body)`` is a StateMachine already fed with ``body``;
- the endpoint in-process: ``call_asgi(app, path, body)`` (or ``asgi_request`` inside a
  running loop) sends one request through an ASGI app with a receive/send pair that behaves
  like an HTTP/2 server's, and returns the status, headers and body of the answer.

Benchmarks import it as well (``bench/replay.py``), so it needs nothing beyond the
framework's protocol and journal layers, msgspec and the standard library (no pytest).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Final, NamedTuple, TypedDict, Unpack

import msgspec

from framework._journal import StateMachine
from framework._protocol import (
    EndMessage,
    ErrorMessage,
    Failure,
    FrameDecoder,
    Header,
    InputCommandMessage,
    Message,
    ProtocolVersion,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    StartMessage,
    StateEntry,
    SuspensionMessage,
    content_type,
    decode_message,
    encode_frame,
)

__all__ = [
    "DEFAULT_DEBUG_ID",
    "DEFAULT_INVOCATION_ID",
    "DEFAULT_RANDOM_SEED",
    "TERMINAL_MESSAGES",
    "ASGIApp",
    "Answer",
    "StartFields",
    "asgi_request",
    "call_asgi",
    "decode_frames",
    "decode_frames_with_flags",
    "eager_state",
    "frame",
    "input_entry",
    "invocation_headers",
    "iter_frames",
    "journal",
    "json",
    "run_entries",
    "start",
    "state_machine",
]

DEFAULT_INVOCATION_ID: Final = b"\x01" * 16
DEFAULT_DEBUG_ID: Final = "inv_test"
DEFAULT_RANDOM_SEED: Final = 42

# The messages after which an attempt sends nothing more.
TERMINAL_MESSAGES: Final = (ErrorMessage, EndMessage, SuspensionMessage)

_TERMINAL_TYPES: Final = frozenset(cls.TYPE for cls in TERMINAL_MESSAGES)
_FRAME_HEADER: Final = struct.Struct(">HHI")  # type id, flags, payload length


# -- request bodies -------------------------------------------------------------------------


class StartFields(TypedDict, total=False):
    """The StartMessage fields a journal may set besides ``known_entries``."""

    id: bytes
    debug_id: str
    state_map: list[StateEntry]
    partial_state: bool
    key: str
    retry_count_since_last_stored_entry: int
    duration_since_last_stored_entry: int
    random_seed: int
    scope: str | None
    limit_key: str | None
    idempotency_key: str | None


def json(value: object) -> bytes:
    """``value`` as JSON bytes, the way the default serde writes it."""
    return msgspec.json.encode(value)


def start(known: int = 0, **fields: Unpack[StartFields]) -> StartMessage:
    """A StartMessage announcing ``known`` entries; a fixed id, debug id and random seed
    unless ``fields`` say otherwise."""
    fields.setdefault("id", DEFAULT_INVOCATION_ID)
    fields.setdefault("debug_id", DEFAULT_DEBUG_ID)
    fields.setdefault("random_seed", DEFAULT_RANDOM_SEED)
    return StartMessage(known_entries=known, **fields)


def journal(
    *entries: Message, known: int | None = None, **start_fields: Unpack[StartFields]
) -> bytes:
    """A request body: StartMessage (announcing ``entries``, or ``known`` of them), then
    ``entries``, each in its own frame."""
    first = start(len(entries) if known is None else known, **start_fields)
    return b"".join(encode_frame(message) for message in (first, *entries))


def frame(type_id: int, payload: bytes, flags: int = 0) -> bytes:
    """A raw frame with any type id and body (and a truthful length), for malformed input."""
    return _FRAME_HEADER.pack(type_id, flags, len(payload)) + payload


def input_entry(
    value: bytes | None = None, headers: Mapping[str, str] | None = None
) -> InputCommandMessage:
    """The input command: raw ``value`` bytes (see ``json``) and invocation ``headers``."""
    return InputCommandMessage(
        value=value, headers=[Header(key=k, value=v) for k, v in (headers or {}).items()]
    )


def run_entries(
    completion_id: int, name: str, value: bytes | None = None, *, failure: Failure | None = None
) -> tuple[RunCommandMessage, RunCompletionNotificationMessage]:
    """A journaled ``ctx.run``: its command and the notification that completed it, with
    ``value`` (raw bytes, see ``json``) or ``failure``."""
    if (value is None) == (failure is None):
        raise ValueError("a run completes with a value or with a failure")
    return (
        RunCommandMessage(result_completion_id=completion_id, name=name),
        RunCompletionNotificationMessage(completion_id=completion_id, value=value, failure=failure),
    )


def eager_state(values: Mapping[str, bytes]) -> list[StateEntry]:
    """StartMessage.state_map for ``values`` (key -> raw value bytes)."""
    return [StateEntry(key=key.encode(), value=value) for key, value in values.items()]


# -- answers --------------------------------------------------------------------------------


def iter_frames(body: bytes) -> Iterator[tuple[Message, int]]:
    """The messages in ``body`` with their header flags, one by one.

    Raises ProtocolError once the whole frames are out if ``body`` stops inside a frame,
    or as soon as one frame does not decode.
    """
    decoder = FrameDecoder()
    decoder.feed(body)
    while (next_frame := decoder.next_frame()) is not None:
        type_id, flags, payload = next_frame
        yield decode_message(type_id, payload), flags
    decoder.close()


def decode_frames(body: bytes) -> list[Message]:
    """Every message in ``body`` (a response body, or a request body built here)."""
    return [message for message, _flags in iter_frames(body)]


def decode_frames_with_flags(body: bytes) -> list[tuple[Message, int]]:
    """Every message in ``body`` with the flags of its frame header."""
    return list(iter_frames(body))


def state_machine(
    body: bytes,
    *,
    version: int = 6,
    close_input: bool = True,
    max_message_size: int = 32 * 1024 * 1024,
) -> StateMachine:
    """A StateMachine for protocol ``version`` that has received ``body`` (and, with
    ``close_input``, the end of the request)."""
    machine = StateMachine(ProtocolVersion(version), max_message_size)
    machine.receive(body)
    if close_input:
        machine.close_input()
    return machine


# -- the endpoint in-process ----------------------------------------------------------------

ASGIMessage = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[ASGIMessage]],
        Callable[[ASGIMessage], Awaitable[None]],
    ],
    Awaitable[None],
]


class Answer(NamedTuple):
    """What an app answered one request with."""

    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def frames(self) -> list[Message]:
        """The protocol messages of a 200 answer."""
        assert self.status == 200, (self.status, self.body[:500])
        return decode_frames(self.body)


def invocation_headers(version: int = 6) -> dict[str, str]:
    """The content-type and accept headers of an invocation in protocol ``version``."""
    value = content_type(ProtocolVersion(version))
    return {"content-type": value, "accept": value}


async def asgi_request(
    app: ASGIApp,
    path: str,
    body: bytes | Sequence[bytes] = b"",
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    http_version: str = "2",
    input_open_for: float = 0.0,
    close_input_on_answer: bool = False,
    allow_early_answer: bool = False,
    timeout: float = 10.0,
) -> Answer:
    """Send one request through ``app`` in this event loop; its answer.

    ``body`` is the request body, or the chunks it arrives in. ``headers`` default to an
    invocation's in protocol v6 (``invocation_headers``). After the last chunk the request
    side ends, unless ``input_open_for`` keeps it open that many seconds longer (as a Restate
    server does on HTTP/2), or, with ``close_input_on_answer``, until the app sent an
    ErrorMessage, EndMessage or SuspensionMessage if that comes first. Once the request side
    ended, ``receive`` blocks until the response is over, then reports a disconnect, as
    ASGI servers do.

    Fails if the app sends after its response ended or returns without ending it, and,
    unless ``allow_early_answer``, if it ended its response before the request body was in
    (Hypercorn's HTTP/2 breaks the connection then).
    """
    chunks = [body] if isinstance(body, bytes | bytearray) else list(body)
    held = input_open_for > 0 or close_input_on_answer
    input_ended = asyncio.Event()
    response_ended = asyncio.Event()
    answered = asyncio.Event()  # a terminal frame went out
    sent: list[ASGIMessage] = []
    answer_frames = FrameDecoder()
    early = False

    async def receive() -> ASGIMessage:
        if chunks:
            chunk = chunks.pop(0)
            more = bool(chunks) or held
            if not more:
                input_ended.set()
            return {"type": "http.request", "body": chunk, "more_body": more}
        if not input_ended.is_set():
            if close_input_on_answer:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), input_open_for or None)
            else:
                await asyncio.sleep(input_open_for)
            input_ended.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await response_ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: ASGIMessage) -> None:
        nonlocal early
        assert not response_ended.is_set(), f"sent after the response ended: {message}"
        sent.append(message)
        if message["type"] != "http.response.body":
            return
        data = message.get("body", b"")
        if close_input_on_answer and data and sent[0]["status"] == 200:
            answer_frames.feed(data)
            for type_id, _flags, _payload in iter(answer_frames.next_frame, None):
                if type_id in _TERMINAL_TYPES:
                    answered.set()
        if not message.get("more_body", False):
            early = not input_ended.is_set()
            response_ended.set()

    request_headers = invocation_headers() if headers is None else headers
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in request_headers.items()],
    }
    await asyncio.wait_for(app(scope, receive, send), timeout)
    assert response_ended.is_set(), "the app returned without ending its response"
    assert allow_early_answer or not early, "answered before the request body was in"
    start_message = sent[0]
    assert start_message["type"] == "http.response.start", start_message
    response_headers = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start_message["headers"]
    }
    answer_body = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(start_message["status"], response_headers, answer_body)


def call_asgi(
    app: ASGIApp,
    path: str,
    body: bytes | Sequence[bytes] = b"",
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    http_version: str = "2",
    input_open_for: float = 0.0,
    close_input_on_answer: bool = False,
    allow_early_answer: bool = False,
    timeout: float = 10.0,
) -> Answer:
    """``asgi_request`` in an event loop of its own: the answer's (status, headers, body)."""
    return asyncio.run(
        asgi_request(
            app,
            path,
            body,
            method=method,
            headers=headers,
            http_version=http_version,
            input_open_for=input_open_for,
            close_input_on_answer=close_input_on_answer,
            allow_early_answer=allow_early_answer,
            timeout=timeout,
        )
    )
