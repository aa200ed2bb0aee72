"""The service protocol's messages as msgspec Structs, each with a declarative field table.

Conventions (shared with the journal state machine):

* class and field names are the proto names; proto3 defaults for plain fields, ``None``
  for ``optional`` scalars, sub-messages and oneof members;
* ``Value`` is flattened to ``bytes | None`` (``b""`` is a present, empty value);
  ``Void`` to ``bool``; ``StateKeys`` to ``list[bytes] | None``;
* each field is declared once, as ``name: Annotated[type, pb(number, ...)] = default``;
  at import time its ``FIELDS`` table is derived from those annotations and the codec's
  tables are compiled from ``FIELDS``, never from per-class code.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable
from typing import Annotated, ClassVar, Final, NamedTuple, TypeAlias

import msgspec

from framework._protocol.wire import WIRE_LEN, WIRE_VARINT, field_key

__all__ = [
    "KIND_BOOL",
    "KIND_BYTES",
    "KIND_ENUM",
    "KIND_MESSAGE",
    "KIND_REPEATED_BYTES",
    "KIND_REPEATED_MESSAGE",
    "KIND_REPEATED_STRING",
    "KIND_REPEATED_UINT32",
    "KIND_STATE_KEYS",
    "KIND_STRING",
    "KIND_UINT32",
    "KIND_UINT64",
    "KIND_VALUE",
    "KIND_VOID",
    "MESSAGE_TYPES",
    "AttachInvocationCommandMessage",
    "AttachInvocationCompletionNotificationMessage",
    "AwaitingOnMessage",
    "BuiltInSignal",
    "CallCommandMessage",
    "CallCompletionNotificationMessage",
    "CallInvocationIdCompletionNotificationMessage",
    "ClearAllStateCommandMessage",
    "ClearStateCommandMessage",
    "CombinatorType",
    "CommandAckMessage",
    "CompleteAwakeableCommandMessage",
    "CompletePromiseCommandMessage",
    "CompletePromiseCompletionNotificationMessage",
    "CustomEntry",
    "EndMessage",
    "ErrorBehavior",
    "ErrorMessage",
    "Failure",
    "FailureMetadata",
    "Field",
    "Future",
    "GetEagerStateCommandMessage",
    "GetEagerStateKeysCommandMessage",
    "GetInvocationOutputCommandMessage",
    "GetInvocationOutputCompletionNotificationMessage",
    "GetLazyStateCommandMessage",
    "GetLazyStateCompletionNotificationMessage",
    "GetLazyStateKeysCommandMessage",
    "GetLazyStateKeysCompletionNotificationMessage",
    "GetPromiseCommandMessage",
    "GetPromiseCompletionNotificationMessage",
    "Header",
    "IdempotentRequestTarget",
    "InputCommandMessage",
    "Message",
    "OneWayCallCommandMessage",
    "OutputCommandMessage",
    "PeekPromiseCommandMessage",
    "PeekPromiseCompletionNotificationMessage",
    "ProposeRunCompletionAckMessage",
    "ProposeRunCompletionMessage",
    "ProtoStruct",
    "RunCommandMessage",
    "RunCompletionNotificationMessage",
    "SendSignalCommandMessage",
    "SetStateCommandMessage",
    "SignalNotificationMessage",
    "SleepCommandMessage",
    "SleepCompletionNotificationMessage",
    "StartMessage",
    "StateEntry",
    "SuspensionMessage",
    "WorkflowTarget",
    "is_command",
    "is_custom_entry",
    "is_notification",
    "pb",
]

# --- Field kinds. Plain ints, because the decoder compares them in its inner loop. ---
# Varint-encoded kinds come first so the decoder can split on `kind < KIND_FIRST_LEN`.
KIND_UINT32: Final = 0
KIND_UINT64: Final = 1
KIND_BOOL: Final = 2
KIND_ENUM: Final = 3  # proto3 enums are open int32s: unknown values must survive a round trip.
KIND_REPEATED_UINT32_UNPACKED: Final = 4  # decode-only: a repeated uint32 sent one key per element
KIND_STRING: Final = 5
KIND_BYTES: Final = 6
KIND_VALUE: Final = 7  # the `Value` wrapper, flattened to its content
KIND_MESSAGE: Final = 8
KIND_VOID: Final = 9  # the empty `Void` message, flattened to a bool
KIND_STATE_KEYS: Final = 10  # the `StateKeys` wrapper, flattened to its list of keys
KIND_REPEATED_UINT32: Final = 11  # packed on encode, both layouts accepted on decode
KIND_REPEATED_STRING: Final = 12
KIND_REPEATED_MESSAGE: Final = 13
KIND_REPEATED_BYTES: Final = 14

KIND_FIRST_LEN: Final = KIND_STRING

_WIRE_TYPES: Final = {
    KIND_UINT32: WIRE_VARINT,
    KIND_UINT64: WIRE_VARINT,
    KIND_BOOL: WIRE_VARINT,
    KIND_ENUM: WIRE_VARINT,
    KIND_STRING: WIRE_LEN,
    KIND_BYTES: WIRE_LEN,
    KIND_VALUE: WIRE_LEN,
    KIND_MESSAGE: WIRE_LEN,
    KIND_VOID: WIRE_LEN,
    KIND_STATE_KEYS: WIRE_LEN,
    KIND_REPEATED_UINT32: WIRE_LEN,
    KIND_REPEATED_STRING: WIRE_LEN,
    KIND_REPEATED_MESSAGE: WIRE_LEN,
    KIND_REPEATED_BYTES: WIRE_LEN,
}

# Kinds whose absence is `None` rather than a proto3 default.
_ALWAYS_EXPLICIT: Final = frozenset({KIND_VALUE, KIND_MESSAGE, KIND_STATE_KEYS})

_COMMAND_FIRST: Final = 0x0400
_NOTIFICATION_FIRST: Final = 0x8000
_CUSTOM_FIRST: Final = 0xFC00


class Field(NamedTuple):
    """One row of a message's field table."""

    number: int
    name: str
    kind: int
    message: str | None = None  # class name, for KIND_MESSAGE and KIND_REPEATED_MESSAGE
    oneof: str | None = None  # the proto oneof this field belongs to
    optional: bool = False  # proto3 `optional`: explicit presence, None when absent


class _Pb(NamedTuple):
    """The wire facts of one struct field, carried as ``Annotated`` metadata (see ``pb``)."""

    number: int
    kind: int | None  # None: implied by the Python type
    oneof: str | None


def pb(number: int, kind: int | None = None, *, oneof: str | None = None) -> _Pb:
    """Mark a struct field as protobuf field ``number``: ``x: Annotated[T, pb(1)] = ...``.

    The name comes from the attribute, explicit presence (proto3 ``optional``) from a
    ``T | None`` type with a ``None`` default, and a sub-message's class from ``T``. The
    ``kind`` is needed only where ``T`` cannot tell it: ``int`` (uint32, uint64 or enum),
    ``list[int]`` (KIND_REPEATED_UINT32) and the flattened wrappers (KIND_VALUE for
    ``bytes | None``, KIND_VOID for ``bool``, KIND_STATE_KEYS for ``list[bytes] | None``).
    """
    return _Pb(number, kind, oneof)


# (python name, kind, sub-message class, names of the other members of its oneof)
DecodeSpec: TypeAlias = "tuple[str, int, type[ProtoStruct] | None, tuple[str, ...]]"
# (python name, kind, encoded key, sub-message class, None-means-absent, oneof name)
EncodeSpec: TypeAlias = "tuple[str, int, bytes, type[ProtoStruct] | None, bool, str | None]"


class CombinatorType(enum.IntEnum):
    """How a Future combines its children (``Future.combinator_type``)."""

    COMBINATOR_TYPE_UNKNOWN = 0  # treated as FIRST_COMPLETED
    FIRST_COMPLETED = 1
    ALL_COMPLETED = 2
    FIRST_SUCCEEDED_OR_ALL_FAILED = 3
    ALL_SUCCEEDED_OR_FIRST_FAILED = 4


class ErrorBehavior(enum.IntEnum):
    """What the runtime does after an ErrorMessage (``ErrorMessage.behavior``)."""

    RETRY = 0
    PAUSE = 1
    FAIL = 2


class BuiltInSignal(enum.IntEnum):
    """Signal ids reserved by the protocol (ids 2..15 are reserved too)."""

    SIGNAL_UNKNOWN = 0
    CANCEL = 1


class ProtoStruct(msgspec.Struct, kw_only=True, gc=False):
    """Base of every protocol struct, top-level or nested."""

    FIELDS: ClassVar[tuple[Field, ...]] = ()  # derived from the ``pb`` annotations
    # Compiled from FIELDS once, at import time, for the codec.
    _DECODE: ClassVar[dict[int, DecodeSpec]]
    _ENCODE: ClassVar[tuple[EncodeSpec, ...]]
    _NUMBERS: ClassVar[dict[int, tuple[str, int]]]  # number -> (name, wire type)


class Message(ProtoStruct):
    """Base of the messages that travel in a frame of their own."""

    TYPE: ClassVar[int]


# --- Nested messages ---


class StateEntry(ProtoStruct):
    """StartMessage.StateEntry: one eagerly sent state key/value (empty value != missing)."""

    key: Annotated[bytes, pb(1)] = b""
    value: Annotated[bytes, pb(2)] = b""


class Future(ProtoStruct):
    """An await point as a tree of combinators over notification ids (v7)."""

    waiting_completions: Annotated[list[int], pb(1, KIND_REPEATED_UINT32)] = []
    waiting_signals: Annotated[list[int], pb(2, KIND_REPEATED_UINT32)] = []
    waiting_named_signals: Annotated[list[str], pb(3)] = []
    nested_futures: Annotated[list[Future], pb(4)] = []
    combinator_type: Annotated[int, pb(5, KIND_ENUM)] = 0


class FailureMetadata(ProtoStruct):
    """One key/value pair of Failure.metadata (v6+)."""

    key: Annotated[str, pb(1)] = ""
    value: Annotated[str, pb(2)] = ""


class Failure(ProtoStruct):
    """A user-visible failure: an HTTP-like code, a message, optional metadata."""

    code: Annotated[int, pb(1, KIND_UINT32)] = 0
    message: Annotated[str, pb(2)] = ""
    metadata: Annotated[list[FailureMetadata], pb(3)] = []


class Header(ProtoStruct):
    """An invocation header (key/value)."""

    key: Annotated[str, pb(1)] = ""
    value: Annotated[str, pb(2)] = ""


class WorkflowTarget(ProtoStruct):
    """Addresses a workflow run by name and key."""

    workflow_name: Annotated[str, pb(1)] = ""
    workflow_key: Annotated[str, pb(2)] = ""
    scope: Annotated[str | None, pb(3)] = None


class IdempotentRequestTarget(ProtoStruct):
    """Addresses an invocation by its idempotency key."""

    service_name: Annotated[str, pb(1)] = ""
    service_key: Annotated[str | None, pb(2)] = None
    handler_name: Annotated[str, pb(3)] = ""
    idempotency_key: Annotated[str, pb(4)] = ""
    scope: Annotated[str | None, pb(5)] = None


# --- Core frames ---


class StartMessage(Message):
    """0x0000: opens the stream with the invocation's identity and eager state."""

    TYPE = 0x0000
    id: Annotated[bytes, pb(1)] = b""
    debug_id: Annotated[str, pb(2)] = ""
    known_entries: Annotated[int, pb(3, KIND_UINT32)] = 0
    state_map: Annotated[list[StateEntry], pb(4)] = []
    partial_state: Annotated[bool, pb(5)] = False
    key: Annotated[str, pb(6)] = ""
    retry_count_since_last_stored_entry: Annotated[int, pb(7, KIND_UINT32)] = 0
    duration_since_last_stored_entry: Annotated[int, pb(8, KIND_UINT64)] = 0
    random_seed: Annotated[int, pb(9, KIND_UINT64)] = 0
    scope: Annotated[str | None, pb(10)] = None
    limit_key: Annotated[str | None, pb(11)] = None
    idempotency_key: Annotated[str | None, pb(12)] = None


class SuspensionMessage(Message):
    """0x0001: the invocation suspends until one of the awaited notifications arrives.

    v5/v6 use the three flat ``waiting_*`` lists (fields 1-3); v7 reserves those numbers
    and uses ``awaiting_on`` (field 4). Both layouts share this class; the sender picks
    the one its negotiated version speaks.
    """

    TYPE = 0x0001
    waiting_completions: Annotated[list[int], pb(1, KIND_REPEATED_UINT32)] = []
    waiting_signals: Annotated[list[int], pb(2, KIND_REPEATED_UINT32)] = []
    waiting_named_signals: Annotated[list[str], pb(3)] = []
    awaiting_on: Annotated[Future | None, pb(4)] = None


class ErrorMessage(Message):
    """0x0002: the invocation attempt failed (and, by ``behavior``, what to do next)."""

    TYPE = 0x0002
    code: Annotated[int, pb(1, KIND_UINT32)] = 0
    message: Annotated[str, pb(2)] = ""
    stacktrace: Annotated[str, pb(3)] = ""
    related_command_index: Annotated[int | None, pb(4, KIND_UINT32)] = None
    related_command_name: Annotated[str | None, pb(5)] = None
    related_command_type: Annotated[int | None, pb(6, KIND_UINT32)] = None
    next_retry_delay: Annotated[int | None, pb(8, KIND_UINT64)] = None
    behavior: Annotated[int, pb(9, KIND_ENUM)] = 0


class EndMessage(Message):
    """0x0003: the invocation ended; nothing follows."""

    TYPE = 0x0003


class CommandAckMessage(Message):
    """0x0004: the runtime stored the command at ``command_index``."""

    TYPE = 0x0004
    command_index: Annotated[int, pb(1, KIND_UINT32)] = 0


class ProposeRunCompletionMessage(Message):
    """0x0005: proposes the result of a ctx.run; may carry the REQUESTED_ACK header flag."""

    TYPE = 0x0005
    result_completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    value: Annotated[bytes | None, pb(14, oneof="result")] = None
    failure: Annotated[Failure | None, pb(15, oneof="result")] = None


class AwaitingOnMessage(Message):
    """0x0006: tells the runtime what user code is currently blocked on (v7)."""

    TYPE = 0x0006
    awaiting_on: Annotated[Future | None, pb(1)] = None
    executing_side_effects: Annotated[bool, pb(2)] = False


class ProposeRunCompletionAckMessage(Message):
    """0x0007: the runtime stored the proposed run completion ``completion_id`` (v7)."""

    TYPE = 0x0007
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0


# --- Commands and notifications ---


class InputCommandMessage(Message):
    """0x0400: the invocation's input (always the first command)."""

    TYPE = 0x0400
    headers: Annotated[list[Header], pb(1)] = []
    name: Annotated[str, pb(12)] = ""
    value: Annotated[bytes | None, pb(14, KIND_VALUE)] = None


class OutputCommandMessage(Message):
    """0x0401: the invocation's result."""

    TYPE = 0x0401
    name: Annotated[str, pb(12)] = ""
    value: Annotated[bytes | None, pb(14, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(15, oneof="result")] = None


class GetLazyStateCommandMessage(Message):
    """0x0402: reads one state key; the value arrives as a notification."""

    TYPE = 0x0402
    key: Annotated[bytes, pb(1)] = b""
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class GetLazyStateCompletionNotificationMessage(Message):
    """0x8002: result of GetLazyState (``void`` = key missing)."""

    TYPE = 0x8002
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    void: Annotated[bool, pb(4, KIND_VOID, oneof="result")] = False
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None


class SetStateCommandMessage(Message):
    """0x0403: writes one state key."""

    TYPE = 0x0403
    key: Annotated[bytes, pb(1)] = b""
    value: Annotated[bytes | None, pb(3, KIND_VALUE)] = None
    name: Annotated[str, pb(12)] = ""


class ClearStateCommandMessage(Message):
    """0x0404: deletes one state key."""

    TYPE = 0x0404
    key: Annotated[bytes, pb(1)] = b""
    name: Annotated[str, pb(12)] = ""


class ClearAllStateCommandMessage(Message):
    """0x0405: deletes every state key."""

    TYPE = 0x0405
    name: Annotated[str, pb(12)] = ""


class GetLazyStateKeysCommandMessage(Message):
    """0x0406: lists the state keys; they arrive as a notification."""

    TYPE = 0x0406
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class GetLazyStateKeysCompletionNotificationMessage(Message):
    """0x8006: result of GetLazyStateKeys."""

    TYPE = 0x8006
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    state_keys: Annotated[list[bytes] | None, pb(17, KIND_STATE_KEYS)] = None


class GetEagerStateCommandMessage(Message):
    """0x0407: a state read answered from the eager state (``void`` = key missing)."""

    TYPE = 0x0407
    key: Annotated[bytes, pb(1)] = b""
    name: Annotated[str, pb(12)] = ""
    void: Annotated[bool, pb(13, KIND_VOID, oneof="result")] = False
    value: Annotated[bytes | None, pb(14, KIND_VALUE, oneof="result")] = None


class GetEagerStateKeysCommandMessage(Message):
    """0x0408: a state-keys listing answered from the eager state."""

    TYPE = 0x0408
    name: Annotated[str, pb(12)] = ""
    value: Annotated[list[bytes] | None, pb(14, KIND_STATE_KEYS)] = None


class GetPromiseCommandMessage(Message):
    """0x0409: awaits a workflow promise."""

    TYPE = 0x0409
    key: Annotated[str, pb(1)] = ""
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class GetPromiseCompletionNotificationMessage(Message):
    """0x8009: result of GetPromise."""

    TYPE = 0x8009
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class PeekPromiseCommandMessage(Message):
    """0x040A: reads a workflow promise without waiting."""

    TYPE = 0x040A
    key: Annotated[str, pb(1)] = ""
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class PeekPromiseCompletionNotificationMessage(Message):
    """0x800A: result of PeekPromise (``void`` = not completed yet)."""

    TYPE = 0x800A
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    void: Annotated[bool, pb(4, KIND_VOID, oneof="result")] = False
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class CompletePromiseCommandMessage(Message):
    """0x040B: resolves or rejects a workflow promise."""

    TYPE = 0x040B
    key: Annotated[str, pb(1)] = ""
    completion_value: Annotated[bytes | None, pb(2, KIND_VALUE, oneof="completion")] = None
    completion_failure: Annotated[Failure | None, pb(3, oneof="completion")] = None
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class CompletePromiseCompletionNotificationMessage(Message):
    """0x800B: result of CompletePromise (``void`` = done; failure = already completed)."""

    TYPE = 0x800B
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    void: Annotated[bool, pb(4, KIND_VOID, oneof="result")] = False
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class SleepCommandMessage(Message):
    """0x040C: a durable timer; ``wake_up_time`` is milliseconds since the UNIX epoch."""

    TYPE = 0x040C
    wake_up_time: Annotated[int, pb(1, KIND_UINT64)] = 0
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class SleepCompletionNotificationMessage(Message):
    """0x800C: the timer fired."""

    TYPE = 0x800C
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    void: Annotated[bool, pb(4, KIND_VOID)] = False


class CallCommandMessage(Message):
    """0x040D: a request-response call to another handler."""

    TYPE = 0x040D
    service_name: Annotated[str, pb(1)] = ""
    handler_name: Annotated[str, pb(2)] = ""
    parameter: Annotated[bytes, pb(3)] = b""
    headers: Annotated[list[Header], pb(4)] = []
    key: Annotated[str, pb(5)] = ""
    idempotency_key: Annotated[str | None, pb(6)] = None
    scope: Annotated[str | None, pb(7)] = None
    limit_key: Annotated[str | None, pb(8)] = None
    invocation_id_notification_idx: Annotated[int, pb(10, KIND_UINT32)] = 0
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class CallInvocationIdCompletionNotificationMessage(Message):
    """0x800E: the invocation id of a Call or OneWayCall."""

    TYPE = 0x800E
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    invocation_id: Annotated[str, pb(16)] = ""


class CallCompletionNotificationMessage(Message):
    """0x800D: result of a Call."""

    TYPE = 0x800D
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class OneWayCallCommandMessage(Message):
    """0x040E: a fire-and-forget (optionally delayed) call to another handler."""

    TYPE = 0x040E
    service_name: Annotated[str, pb(1)] = ""
    handler_name: Annotated[str, pb(2)] = ""
    parameter: Annotated[bytes, pb(3)] = b""
    invoke_time: Annotated[int, pb(4, KIND_UINT64)] = 0
    headers: Annotated[list[Header], pb(5)] = []
    key: Annotated[str, pb(6)] = ""
    idempotency_key: Annotated[str | None, pb(7)] = None
    scope: Annotated[str | None, pb(8)] = None
    limit_key: Annotated[str | None, pb(9)] = None
    invocation_id_notification_idx: Annotated[int, pb(10, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class SendSignalCommandMessage(Message):
    """0x0410: sends a signal (by index or name) to another invocation."""

    TYPE = 0x0410
    target_invocation_id: Annotated[str, pb(1)] = ""
    idx: Annotated[int | None, pb(2, KIND_UINT32, oneof="signal_id")] = None
    name: Annotated[str | None, pb(3, oneof="signal_id")] = None
    void: Annotated[bool, pb(4, KIND_VOID, oneof="result")] = False
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None
    entry_name: Annotated[str, pb(12)] = ""


class RunCommandMessage(Message):
    """0x0411: a ctx.run; its result is proposed with ProposeRunCompletionMessage."""

    TYPE = 0x0411
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class RunCompletionNotificationMessage(Message):
    """0x8011: the stored result of a ctx.run."""

    TYPE = 0x8011
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class AttachInvocationCommandMessage(Message):
    """0x0412: waits for another invocation's result."""

    TYPE = 0x0412
    invocation_id: Annotated[str | None, pb(1, oneof="target")] = None
    idempotent_request_target: Annotated[IdempotentRequestTarget | None, pb(3, oneof="target")] = (
        None
    )
    workflow_target: Annotated[WorkflowTarget | None, pb(4, oneof="target")] = None
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class AttachInvocationCompletionNotificationMessage(Message):
    """0x8012: result of AttachInvocation."""

    TYPE = 0x8012
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class GetInvocationOutputCommandMessage(Message):
    """0x0413: reads another invocation's result without waiting."""

    TYPE = 0x0413
    invocation_id: Annotated[str | None, pb(1, oneof="target")] = None
    idempotent_request_target: Annotated[IdempotentRequestTarget | None, pb(3, oneof="target")] = (
        None
    )
    workflow_target: Annotated[WorkflowTarget | None, pb(4, oneof="target")] = None
    result_completion_id: Annotated[int, pb(11, KIND_UINT32)] = 0
    name: Annotated[str, pb(12)] = ""


class GetInvocationOutputCompletionNotificationMessage(Message):
    """0x8013: result of GetInvocationOutput (``void`` = not finished yet)."""

    TYPE = 0x8013
    completion_id: Annotated[int, pb(1, KIND_UINT32)] = 0
    void: Annotated[bool, pb(4, KIND_VOID, oneof="result")] = False
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class CompleteAwakeableCommandMessage(Message):
    """0x0414: resolves or rejects an awakeable by its (old- or new-style) id."""

    TYPE = 0x0414
    awakeable_id: Annotated[str, pb(1)] = ""
    value: Annotated[bytes | None, pb(2, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(3, oneof="result")] = None
    name: Annotated[str, pb(12)] = ""


class SignalNotificationMessage(Message):
    """0xFBFF: a signal (by index or name) delivered to this invocation."""

    TYPE = 0xFBFF
    idx: Annotated[int | None, pb(2, KIND_UINT32, oneof="signal_id")] = None
    name: Annotated[str | None, pb(3, oneof="signal_id")] = None
    void: Annotated[bool, pb(4, KIND_VOID, oneof="result")] = False
    value: Annotated[bytes | None, pb(5, KIND_VALUE, oneof="result")] = None
    failure: Annotated[Failure | None, pb(6, oneof="result")] = None


class CustomEntry(Message):
    """A journal entry in the custom range 0xFC00..0xFFFF, kept as raw bytes.

    Its type id varies per instance, so read ``type_id``; the class-level ``TYPE`` is only
    the first id of the range. It is not in MESSAGE_TYPES.
    """

    TYPE = _CUSTOM_FIRST
    type_id: int
    payload: bytes = b""


# The flattened wrapper messages. They never appear in a message class; the codec parses
# their bodies with the same table-driven loop so unknown fields and merging behave alike.


class _Value(ProtoStruct):
    content: Annotated[bytes, pb(1)] = b""


class _StateKeys(ProtoStruct):
    keys: Annotated[list[bytes], pb(1)] = []


class _Void(ProtoStruct):
    pass


def is_command(type_id: int) -> bool:
    """True for command type ids (0x0400..0x7FFF)."""
    return _COMMAND_FIRST <= type_id < _NOTIFICATION_FIRST


def is_notification(type_id: int) -> bool:
    """True for notification type ids (0x8000..0xFBFF)."""
    return _NOTIFICATION_FIRST <= type_id < _CUSTOM_FIRST


def is_custom_entry(type_id: int) -> bool:
    """True for custom entry type ids (0xFC00..0xFFFF)."""
    return _CUSTOM_FIRST <= type_id <= 0xFFFF


# The Python type (without ``| None``) each non-message kind is declared with.
_PY_TYPES: Final[dict[int, object]] = {
    KIND_UINT32: int,
    KIND_UINT64: int,
    KIND_BOOL: bool,
    KIND_ENUM: int,
    KIND_STRING: str,
    KIND_BYTES: bytes,
    KIND_VALUE: bytes,
    KIND_VOID: bool,
    KIND_STATE_KEYS: list[bytes],
    KIND_REPEATED_UINT32: list[int],
    KIND_REPEATED_STRING: list[str],
    KIND_REPEATED_BYTES: list[bytes],
}
# The kind a Python type implies when ``pb`` names none (``int`` and ``list[int]`` imply none).
_IMPLIED_KINDS: Final[dict[object, int]] = {
    bool: KIND_BOOL,
    str: KIND_STRING,
    bytes: KIND_BYTES,
    list[str]: KIND_REPEATED_STRING,
    list[bytes]: KIND_REPEATED_BYTES,
}
# The kinds that may be proto3 `optional`.
_SCALARS: Final = frozenset(
    {KIND_UINT32, KIND_UINT64, KIND_BOOL, KIND_ENUM, KIND_STRING, KIND_BYTES}
)


def _strip_none(tp: object) -> tuple[object, bool]:
    """``T | None`` -> ``(T, True)``; any other type -> ``(type, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [arg for arg in args if arg is not types.NoneType]
        if len(rest) == 1 and len(args) == 2:
            return rest[0], True
    return tp, False


def _sub_message(tp: object) -> tuple[type[ProtoStruct] | None, int]:
    """The sub-message class and kind ``tp`` (``T`` or ``list[T]``) stands for, if any."""
    if isinstance(tp, type) and issubclass(tp, ProtoStruct):
        return tp, KIND_MESSAGE
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if isinstance(item, type) and issubclass(item, ProtoStruct):
            return item, KIND_REPEATED_MESSAGE
    return None, -1


def _derive_fields(
    cls: type[ProtoStruct], infos: Iterable[msgspec.structs.FieldInfo]
) -> tuple[Field, ...]:
    """Build ``cls``'s field table from its ``Annotated[T, pb(...)]`` declarations.

    ``infos`` is ``msgspec.structs.fields(cls)``: its types are the resolved annotations,
    ``Annotated`` metadata kept (what ``typing.get_type_hints(cls, include_extras=True)``
    gives, without resolving them a second time). Run it once every class exists, so
    forward references such as ``list[Future]`` inside ``Future`` resolve.
    """
    fields: list[Field] = []
    for info in infos:
        name = info.name
        where = f"{cls.__name__}.{name}"
        marks = [m for m in getattr(info.type, "__metadata__", ()) if isinstance(m, _Pb)]
        if len(marks) != 1:
            raise TypeError(f"{where}: declare it as `Annotated[T, pb(number, ...)]`")
        mark = marks[0]
        py_type, nullable = _strip_none(typing.get_args(info.type)[0])
        if nullable != (info.default is None):
            raise TypeError(f"{where}: a `T | None` type goes exactly with a None default")
        sub, message_kind = _sub_message(py_type)
        if sub is not None:
            kind = message_kind if mark.kind is None else mark.kind
            if kind != message_kind:
                raise TypeError(f"{where}: a sub-message field cannot have kind {kind}")
        else:
            implied = _IMPLIED_KINDS.get(py_type)
            kind_or_none = implied if mark.kind is None else mark.kind
            if kind_or_none is None:
                raise TypeError(f"{where}: {py_type} needs an explicit kind, pb(number, KIND_...)")
            kind = kind_or_none
            if _PY_TYPES.get(kind) != py_type:
                raise TypeError(f"{where}: kind {kind} is not declared as {py_type}")
        optional = nullable and kind not in _ALWAYS_EXPLICIT and mark.oneof is None
        if optional and kind not in _SCALARS:
            raise TypeError(f"{where}: only a scalar field can be proto3 optional")
        message = sub.__name__ if sub is not None else None
        fields.append(Field(mark.number, name, kind, message, mark.oneof, optional))
    return tuple(fields)


def _compile(cls: type[ProtoStruct]) -> None:
    """Derive ``cls``'s FIELDS from its annotations, then build the codec's tables from it."""
    infos = {info.name: info for info in msgspec.structs.fields(cls)}
    cls.FIELDS = _derive_fields(cls, infos.values())
    fields = sorted(cls.FIELDS, key=lambda f: f.number)
    names = [f.name for f in fields]
    if sorted(names) != sorted(infos):
        raise TypeError(f"{cls.__name__}.FIELDS does not list exactly the struct's fields")
    if len({f.number for f in fields}) != len(fields):
        raise TypeError(f"{cls.__name__}.FIELDS reuses a field number")
    decode: dict[int, DecodeSpec] = {}
    encode: list[EncodeSpec] = []
    for f in fields:
        where = f"{cls.__name__}.{f.name}"
        sub = _NESTED[f.message] if f.message is not None else None
        if (sub is None) == (f.kind in (KIND_MESSAGE, KIND_REPEATED_MESSAGE)):
            raise TypeError(f"{where}: a sub-message class is needed exactly for messages")
        explicit = (
            f.optional
            or f.kind in _ALWAYS_EXPLICIT
            or (f.oneof is not None and f.kind != KIND_VOID)
        )
        if explicit != (infos[f.name].default is None):
            raise TypeError(f"{where}: the default must be None exactly when presence is explicit")
        others = tuple(
            o.name for o in fields if o.oneof is not None and o.oneof == f.oneof and o is not f
        )
        wire_type = _WIRE_TYPES[f.kind]
        decode[(f.number << 3) | wire_type] = (f.name, f.kind, sub, others)
        if f.kind == KIND_REPEATED_UINT32:
            decode[(f.number << 3) | WIRE_VARINT] = (
                f.name,
                KIND_REPEATED_UINT32_UNPACKED,
                None,
                others,
            )
        encode.append((f.name, f.kind, field_key(f.number, wire_type), sub, explicit, f.oneof))
    cls._DECODE = decode
    cls._ENCODE = tuple(encode)
    cls._NUMBERS = {f.number: (f.name, _WIRE_TYPES[f.kind]) for f in fields}


_NESTED: Final[dict[str, type[ProtoStruct]]] = {
    cls.__name__: cls
    for cls in (
        StateEntry,
        Future,
        FailureMetadata,
        Failure,
        Header,
        WorkflowTarget,
        IdempotentRequestTarget,
    )
}

_TOP_LEVEL: Final[tuple[type[Message], ...]] = (
    StartMessage,
    SuspensionMessage,
    ErrorMessage,
    EndMessage,
    CommandAckMessage,
    ProposeRunCompletionMessage,
    AwaitingOnMessage,
    ProposeRunCompletionAckMessage,
    InputCommandMessage,
    OutputCommandMessage,
    GetLazyStateCommandMessage,
    GetLazyStateCompletionNotificationMessage,
    SetStateCommandMessage,
    ClearStateCommandMessage,
    ClearAllStateCommandMessage,
    GetLazyStateKeysCommandMessage,
    GetLazyStateKeysCompletionNotificationMessage,
    GetEagerStateCommandMessage,
    GetEagerStateKeysCommandMessage,
    GetPromiseCommandMessage,
    GetPromiseCompletionNotificationMessage,
    PeekPromiseCommandMessage,
    PeekPromiseCompletionNotificationMessage,
    CompletePromiseCommandMessage,
    CompletePromiseCompletionNotificationMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    CallCommandMessage,
    CallInvocationIdCompletionNotificationMessage,
    CallCompletionNotificationMessage,
    OneWayCallCommandMessage,
    SendSignalCommandMessage,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    AttachInvocationCommandMessage,
    AttachInvocationCompletionNotificationMessage,
    GetInvocationOutputCommandMessage,
    GetInvocationOutputCompletionNotificationMessage,
    CompleteAwakeableCommandMessage,
    SignalNotificationMessage,
)

MESSAGE_TYPES: Final[dict[int, type[Message]]] = {cls.TYPE: cls for cls in _TOP_LEVEL}
if len(MESSAGE_TYPES) != len(_TOP_LEVEL):
    raise TypeError("two message classes share a type id")

# CustomEntry has no table: the codec passes its payload through untouched.
_ALL_TABLED: Final[tuple[type[ProtoStruct], ...]] = (
    *_NESTED.values(),
    *_TOP_LEVEL,
    _Value,
    _StateKeys,
    _Void,
)
for _cls in _ALL_TABLED:
    _compile(_cls)
del _cls
