"""The service protocol's messages as msgspec Structs, each with a declarative field table.

Conventions (shared with the journal state machine):

* class and field names are the proto names; proto3 defaults for plain fields, ``None``
  for ``optional`` scalars, sub-messages and oneof members;
* ``Value`` is flattened to ``bytes | None`` (``b""`` is a present, empty value);
  ``Void`` to ``bool``; ``StateKeys`` to ``list[bytes] | None``;
* each class lists its fields once, in ``FIELDS``; the codec works from tables compiled
  from it at import time, never from per-class code.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Final, NamedTuple, TypeAlias

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

    FIELDS: ClassVar[tuple[Field, ...]] = ()
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

    FIELDS = (
        Field(1, "key", KIND_BYTES),
        Field(2, "value", KIND_BYTES),
    )
    key: bytes = b""
    value: bytes = b""


class Future(ProtoStruct):
    """An await point as a tree of combinators over notification ids (v7)."""

    FIELDS = (
        Field(1, "waiting_completions", KIND_REPEATED_UINT32),
        Field(2, "waiting_signals", KIND_REPEATED_UINT32),
        Field(3, "waiting_named_signals", KIND_REPEATED_STRING),
        Field(4, "nested_futures", KIND_REPEATED_MESSAGE, "Future"),
        Field(5, "combinator_type", KIND_ENUM),
    )
    waiting_completions: list[int] = []
    waiting_signals: list[int] = []
    waiting_named_signals: list[str] = []
    nested_futures: list[Future] = []
    combinator_type: int = 0


class FailureMetadata(ProtoStruct):
    """One key/value pair of Failure.metadata (v6+)."""

    FIELDS = (
        Field(1, "key", KIND_STRING),
        Field(2, "value", KIND_STRING),
    )
    key: str = ""
    value: str = ""


class Failure(ProtoStruct):
    """A user-visible failure: an HTTP-like code, a message, optional metadata."""

    FIELDS = (
        Field(1, "code", KIND_UINT32),
        Field(2, "message", KIND_STRING),
        Field(3, "metadata", KIND_REPEATED_MESSAGE, "FailureMetadata"),
    )
    code: int = 0
    message: str = ""
    metadata: list[FailureMetadata] = []


class Header(ProtoStruct):
    """An invocation header (key/value)."""

    FIELDS = (
        Field(1, "key", KIND_STRING),
        Field(2, "value", KIND_STRING),
    )
    key: str = ""
    value: str = ""


class WorkflowTarget(ProtoStruct):
    """Addresses a workflow run by name and key."""

    FIELDS = (
        Field(1, "workflow_name", KIND_STRING),
        Field(2, "workflow_key", KIND_STRING),
        Field(3, "scope", KIND_STRING, optional=True),
    )
    workflow_name: str = ""
    workflow_key: str = ""
    scope: str | None = None


class IdempotentRequestTarget(ProtoStruct):
    """Addresses an invocation by its idempotency key."""

    FIELDS = (
        Field(1, "service_name", KIND_STRING),
        Field(2, "service_key", KIND_STRING, optional=True),
        Field(3, "handler_name", KIND_STRING),
        Field(4, "idempotency_key", KIND_STRING),
        Field(5, "scope", KIND_STRING, optional=True),
    )
    service_name: str = ""
    service_key: str | None = None
    handler_name: str = ""
    idempotency_key: str = ""
    scope: str | None = None


# --- Core frames ---


class StartMessage(Message):
    """0x0000: opens the stream with the invocation's identity and eager state."""

    TYPE = 0x0000
    FIELDS = (
        Field(1, "id", KIND_BYTES),
        Field(2, "debug_id", KIND_STRING),
        Field(3, "known_entries", KIND_UINT32),
        Field(4, "state_map", KIND_REPEATED_MESSAGE, "StateEntry"),
        Field(5, "partial_state", KIND_BOOL),
        Field(6, "key", KIND_STRING),
        Field(7, "retry_count_since_last_stored_entry", KIND_UINT32),
        Field(8, "duration_since_last_stored_entry", KIND_UINT64),
        Field(9, "random_seed", KIND_UINT64),
        Field(10, "scope", KIND_STRING, optional=True),
        Field(11, "limit_key", KIND_STRING, optional=True),
        Field(12, "idempotency_key", KIND_STRING, optional=True),
    )
    id: bytes = b""
    debug_id: str = ""
    known_entries: int = 0
    state_map: list[StateEntry] = []
    partial_state: bool = False
    key: str = ""
    retry_count_since_last_stored_entry: int = 0
    duration_since_last_stored_entry: int = 0
    random_seed: int = 0
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


class SuspensionMessage(Message):
    """0x0001: the invocation suspends until one of the awaited notifications arrives.

    v5/v6 use the three flat ``waiting_*`` lists (fields 1-3); v7 reserves those numbers
    and uses ``awaiting_on`` (field 4). Both layouts share this class; the sender picks
    the one its negotiated version speaks.
    """

    TYPE = 0x0001
    FIELDS = (
        Field(1, "waiting_completions", KIND_REPEATED_UINT32),
        Field(2, "waiting_signals", KIND_REPEATED_UINT32),
        Field(3, "waiting_named_signals", KIND_REPEATED_STRING),
        Field(4, "awaiting_on", KIND_MESSAGE, "Future"),
    )
    waiting_completions: list[int] = []
    waiting_signals: list[int] = []
    waiting_named_signals: list[str] = []
    awaiting_on: Future | None = None


class ErrorMessage(Message):
    """0x0002: the invocation attempt failed (and, by ``behavior``, what to do next)."""

    TYPE = 0x0002
    FIELDS = (
        Field(1, "code", KIND_UINT32),
        Field(2, "message", KIND_STRING),
        Field(3, "stacktrace", KIND_STRING),
        Field(4, "related_command_index", KIND_UINT32, optional=True),
        Field(5, "related_command_name", KIND_STRING, optional=True),
        Field(6, "related_command_type", KIND_UINT32, optional=True),
        Field(8, "next_retry_delay", KIND_UINT64, optional=True),
        Field(9, "behavior", KIND_ENUM),
    )
    code: int = 0
    message: str = ""
    stacktrace: str = ""
    related_command_index: int | None = None
    related_command_name: str | None = None
    related_command_type: int | None = None
    next_retry_delay: int | None = None
    behavior: int = 0


class EndMessage(Message):
    """0x0003: the invocation ended; nothing follows."""

    TYPE = 0x0003


class CommandAckMessage(Message):
    """0x0004: the runtime stored the command at ``command_index``."""

    TYPE = 0x0004
    FIELDS = (Field(1, "command_index", KIND_UINT32),)
    command_index: int = 0


class ProposeRunCompletionMessage(Message):
    """0x0005: proposes the result of a ctx.run; may carry the REQUESTED_ACK header flag."""

    TYPE = 0x0005
    FIELDS = (
        Field(1, "result_completion_id", KIND_UINT32),
        Field(14, "value", KIND_BYTES, oneof="result"),
        Field(15, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    result_completion_id: int = 0
    value: bytes | None = None
    failure: Failure | None = None


class AwaitingOnMessage(Message):
    """0x0006: tells the runtime what user code is currently blocked on (v7)."""

    TYPE = 0x0006
    FIELDS = (
        Field(1, "awaiting_on", KIND_MESSAGE, "Future"),
        Field(2, "executing_side_effects", KIND_BOOL),
    )
    awaiting_on: Future | None = None
    executing_side_effects: bool = False


class ProposeRunCompletionAckMessage(Message):
    """0x0007: the runtime stored the proposed run completion ``completion_id`` (v7)."""

    TYPE = 0x0007
    FIELDS = (Field(1, "completion_id", KIND_UINT32),)
    completion_id: int = 0


# --- Commands and notifications ---


class InputCommandMessage(Message):
    """0x0400: the invocation's input (always the first command)."""

    TYPE = 0x0400
    FIELDS = (
        Field(1, "headers", KIND_REPEATED_MESSAGE, "Header"),
        Field(12, "name", KIND_STRING),
        Field(14, "value", KIND_VALUE),
    )
    headers: list[Header] = []
    name: str = ""
    value: bytes | None = None


class OutputCommandMessage(Message):
    """0x0401: the invocation's result."""

    TYPE = 0x0401
    FIELDS = (
        Field(12, "name", KIND_STRING),
        Field(14, "value", KIND_VALUE, oneof="result"),
        Field(15, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    name: str = ""
    value: bytes | None = None
    failure: Failure | None = None


class GetLazyStateCommandMessage(Message):
    """0x0402: reads one state key; the value arrives as a notification."""

    TYPE = 0x0402
    FIELDS = (
        Field(1, "key", KIND_BYTES),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    key: bytes = b""
    result_completion_id: int = 0
    name: str = ""


class GetLazyStateCompletionNotificationMessage(Message):
    """0x8002: result of GetLazyState (``void`` = key missing)."""

    TYPE = 0x8002
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(4, "void", KIND_VOID, oneof="result"),
        Field(5, "value", KIND_VALUE, oneof="result"),
    )
    completion_id: int = 0
    void: bool = False
    value: bytes | None = None


class SetStateCommandMessage(Message):
    """0x0403: writes one state key."""

    TYPE = 0x0403
    FIELDS = (
        Field(1, "key", KIND_BYTES),
        Field(3, "value", KIND_VALUE),
        Field(12, "name", KIND_STRING),
    )
    key: bytes = b""
    value: bytes | None = None
    name: str = ""


class ClearStateCommandMessage(Message):
    """0x0404: deletes one state key."""

    TYPE = 0x0404
    FIELDS = (
        Field(1, "key", KIND_BYTES),
        Field(12, "name", KIND_STRING),
    )
    key: bytes = b""
    name: str = ""


class ClearAllStateCommandMessage(Message):
    """0x0405: deletes every state key."""

    TYPE = 0x0405
    FIELDS = (Field(12, "name", KIND_STRING),)
    name: str = ""


class GetLazyStateKeysCommandMessage(Message):
    """0x0406: lists the state keys; they arrive as a notification."""

    TYPE = 0x0406
    FIELDS = (
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    result_completion_id: int = 0
    name: str = ""


class GetLazyStateKeysCompletionNotificationMessage(Message):
    """0x8006: result of GetLazyStateKeys."""

    TYPE = 0x8006
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(17, "state_keys", KIND_STATE_KEYS),
    )
    completion_id: int = 0
    state_keys: list[bytes] | None = None


class GetEagerStateCommandMessage(Message):
    """0x0407: a state read answered from the eager state (``void`` = key missing)."""

    TYPE = 0x0407
    FIELDS = (
        Field(1, "key", KIND_BYTES),
        Field(12, "name", KIND_STRING),
        Field(13, "void", KIND_VOID, oneof="result"),
        Field(14, "value", KIND_VALUE, oneof="result"),
    )
    key: bytes = b""
    name: str = ""
    void: bool = False
    value: bytes | None = None


class GetEagerStateKeysCommandMessage(Message):
    """0x0408: a state-keys listing answered from the eager state."""

    TYPE = 0x0408
    FIELDS = (
        Field(12, "name", KIND_STRING),
        Field(14, "value", KIND_STATE_KEYS),
    )
    name: str = ""
    value: list[bytes] | None = None


class GetPromiseCommandMessage(Message):
    """0x0409: awaits a workflow promise."""

    TYPE = 0x0409
    FIELDS = (
        Field(1, "key", KIND_STRING),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    key: str = ""
    result_completion_id: int = 0
    name: str = ""


class GetPromiseCompletionNotificationMessage(Message):
    """0x8009: result of GetPromise."""

    TYPE = 0x8009
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    value: bytes | None = None
    failure: Failure | None = None


class PeekPromiseCommandMessage(Message):
    """0x040A: reads a workflow promise without waiting."""

    TYPE = 0x040A
    FIELDS = (
        Field(1, "key", KIND_STRING),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    key: str = ""
    result_completion_id: int = 0
    name: str = ""


class PeekPromiseCompletionNotificationMessage(Message):
    """0x800A: result of PeekPromise (``void`` = not completed yet)."""

    TYPE = 0x800A
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(4, "void", KIND_VOID, oneof="result"),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    void: bool = False
    value: bytes | None = None
    failure: Failure | None = None


class CompletePromiseCommandMessage(Message):
    """0x040B: resolves or rejects a workflow promise."""

    TYPE = 0x040B
    FIELDS = (
        Field(1, "key", KIND_STRING),
        Field(2, "completion_value", KIND_VALUE, oneof="completion"),
        Field(3, "completion_failure", KIND_MESSAGE, "Failure", oneof="completion"),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    key: str = ""
    completion_value: bytes | None = None
    completion_failure: Failure | None = None
    result_completion_id: int = 0
    name: str = ""


class CompletePromiseCompletionNotificationMessage(Message):
    """0x800B: result of CompletePromise (``void`` = done; failure = already completed)."""

    TYPE = 0x800B
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(4, "void", KIND_VOID, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    void: bool = False
    failure: Failure | None = None


class SleepCommandMessage(Message):
    """0x040C: a durable timer; ``wake_up_time`` is milliseconds since the UNIX epoch."""

    TYPE = 0x040C
    FIELDS = (
        Field(1, "wake_up_time", KIND_UINT64),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    wake_up_time: int = 0
    result_completion_id: int = 0
    name: str = ""


class SleepCompletionNotificationMessage(Message):
    """0x800C: the timer fired."""

    TYPE = 0x800C
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(4, "void", KIND_VOID),
    )
    completion_id: int = 0
    void: bool = False


class CallCommandMessage(Message):
    """0x040D: a request-response call to another handler."""

    TYPE = 0x040D
    FIELDS = (
        Field(1, "service_name", KIND_STRING),
        Field(2, "handler_name", KIND_STRING),
        Field(3, "parameter", KIND_BYTES),
        Field(4, "headers", KIND_REPEATED_MESSAGE, "Header"),
        Field(5, "key", KIND_STRING),
        Field(6, "idempotency_key", KIND_STRING, optional=True),
        Field(7, "scope", KIND_STRING, optional=True),
        Field(8, "limit_key", KIND_STRING, optional=True),
        Field(10, "invocation_id_notification_idx", KIND_UINT32),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    service_name: str = ""
    handler_name: str = ""
    parameter: bytes = b""
    headers: list[Header] = []
    key: str = ""
    idempotency_key: str | None = None
    scope: str | None = None
    limit_key: str | None = None
    invocation_id_notification_idx: int = 0
    result_completion_id: int = 0
    name: str = ""


class CallInvocationIdCompletionNotificationMessage(Message):
    """0x800E: the invocation id of a Call or OneWayCall."""

    TYPE = 0x800E
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(16, "invocation_id", KIND_STRING),
    )
    completion_id: int = 0
    invocation_id: str = ""


class CallCompletionNotificationMessage(Message):
    """0x800D: result of a Call."""

    TYPE = 0x800D
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    value: bytes | None = None
    failure: Failure | None = None


class OneWayCallCommandMessage(Message):
    """0x040E: a fire-and-forget (optionally delayed) call to another handler."""

    TYPE = 0x040E
    FIELDS = (
        Field(1, "service_name", KIND_STRING),
        Field(2, "handler_name", KIND_STRING),
        Field(3, "parameter", KIND_BYTES),
        Field(4, "invoke_time", KIND_UINT64),
        Field(5, "headers", KIND_REPEATED_MESSAGE, "Header"),
        Field(6, "key", KIND_STRING),
        Field(7, "idempotency_key", KIND_STRING, optional=True),
        Field(8, "scope", KIND_STRING, optional=True),
        Field(9, "limit_key", KIND_STRING, optional=True),
        Field(10, "invocation_id_notification_idx", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    service_name: str = ""
    handler_name: str = ""
    parameter: bytes = b""
    invoke_time: int = 0
    headers: list[Header] = []
    key: str = ""
    idempotency_key: str | None = None
    scope: str | None = None
    limit_key: str | None = None
    invocation_id_notification_idx: int = 0
    name: str = ""


class SendSignalCommandMessage(Message):
    """0x0410: sends a signal (by index or name) to another invocation."""

    TYPE = 0x0410
    FIELDS = (
        Field(1, "target_invocation_id", KIND_STRING),
        Field(2, "idx", KIND_UINT32, oneof="signal_id"),
        Field(3, "name", KIND_STRING, oneof="signal_id"),
        Field(4, "void", KIND_VOID, oneof="result"),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
        Field(12, "entry_name", KIND_STRING),
    )
    target_invocation_id: str = ""
    idx: int | None = None
    name: str | None = None
    void: bool = False
    value: bytes | None = None
    failure: Failure | None = None
    entry_name: str = ""


class RunCommandMessage(Message):
    """0x0411: a ctx.run; its result is proposed with ProposeRunCompletionMessage."""

    TYPE = 0x0411
    FIELDS = (
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    result_completion_id: int = 0
    name: str = ""


class RunCompletionNotificationMessage(Message):
    """0x8011: the stored result of a ctx.run."""

    TYPE = 0x8011
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    value: bytes | None = None
    failure: Failure | None = None


class AttachInvocationCommandMessage(Message):
    """0x0412: waits for another invocation's result."""

    TYPE = 0x0412
    FIELDS = (
        Field(1, "invocation_id", KIND_STRING, oneof="target"),
        Field(
            3, "idempotent_request_target", KIND_MESSAGE, "IdempotentRequestTarget", oneof="target"
        ),
        Field(4, "workflow_target", KIND_MESSAGE, "WorkflowTarget", oneof="target"),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    invocation_id: str | None = None
    idempotent_request_target: IdempotentRequestTarget | None = None
    workflow_target: WorkflowTarget | None = None
    result_completion_id: int = 0
    name: str = ""


class AttachInvocationCompletionNotificationMessage(Message):
    """0x8012: result of AttachInvocation."""

    TYPE = 0x8012
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    value: bytes | None = None
    failure: Failure | None = None


class GetInvocationOutputCommandMessage(Message):
    """0x0413: reads another invocation's result without waiting."""

    TYPE = 0x0413
    FIELDS = (
        Field(1, "invocation_id", KIND_STRING, oneof="target"),
        Field(
            3, "idempotent_request_target", KIND_MESSAGE, "IdempotentRequestTarget", oneof="target"
        ),
        Field(4, "workflow_target", KIND_MESSAGE, "WorkflowTarget", oneof="target"),
        Field(11, "result_completion_id", KIND_UINT32),
        Field(12, "name", KIND_STRING),
    )
    invocation_id: str | None = None
    idempotent_request_target: IdempotentRequestTarget | None = None
    workflow_target: WorkflowTarget | None = None
    result_completion_id: int = 0
    name: str = ""


class GetInvocationOutputCompletionNotificationMessage(Message):
    """0x8013: result of GetInvocationOutput (``void`` = not finished yet)."""

    TYPE = 0x8013
    FIELDS = (
        Field(1, "completion_id", KIND_UINT32),
        Field(4, "void", KIND_VOID, oneof="result"),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    completion_id: int = 0
    void: bool = False
    value: bytes | None = None
    failure: Failure | None = None


class CompleteAwakeableCommandMessage(Message):
    """0x0414: resolves or rejects an awakeable by its (old- or new-style) id."""

    TYPE = 0x0414
    FIELDS = (
        Field(1, "awakeable_id", KIND_STRING),
        Field(2, "value", KIND_VALUE, oneof="result"),
        Field(3, "failure", KIND_MESSAGE, "Failure", oneof="result"),
        Field(12, "name", KIND_STRING),
    )
    awakeable_id: str = ""
    value: bytes | None = None
    failure: Failure | None = None
    name: str = ""


class SignalNotificationMessage(Message):
    """0xFBFF: a signal (by index or name) delivered to this invocation."""

    TYPE = 0xFBFF
    FIELDS = (
        Field(2, "idx", KIND_UINT32, oneof="signal_id"),
        Field(3, "name", KIND_STRING, oneof="signal_id"),
        Field(4, "void", KIND_VOID, oneof="result"),
        Field(5, "value", KIND_VALUE, oneof="result"),
        Field(6, "failure", KIND_MESSAGE, "Failure", oneof="result"),
    )
    idx: int | None = None
    name: str | None = None
    void: bool = False
    value: bytes | None = None
    failure: Failure | None = None


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
    FIELDS = (Field(1, "content", KIND_BYTES),)
    content: bytes = b""


class _StateKeys(ProtoStruct):
    FIELDS = (Field(1, "keys", KIND_REPEATED_BYTES),)
    keys: list[bytes] = []


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


def _compile(cls: type[ProtoStruct]) -> None:
    """Build the codec's tables for ``cls`` from FIELDS, checking them against the struct."""
    fields = sorted(cls.FIELDS, key=lambda f: f.number)
    infos = {info.name: info for info in msgspec.structs.fields(cls)}
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
