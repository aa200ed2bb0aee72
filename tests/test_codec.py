"""Tests for the service-protocol codec: round trips, exact bytes, and hostile input."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework._protocol import (
    MAX_PROTOCOL_VERSION,
    MESSAGE_TYPES,
    MIN_PROTOCOL_VERSION,
    REQUESTED_ACK_FLAG,
    AttachInvocationCommandMessage,
    AttachInvocationCompletionNotificationMessage,
    AwaitingOnMessage,
    CallCommandMessage,
    CallCompletionNotificationMessage,
    CallInvocationIdCompletionNotificationMessage,
    ClearAllStateCommandMessage,
    ClearStateCommandMessage,
    CombinatorType,
    CommandAckMessage,
    CompleteAwakeableCommandMessage,
    CompletePromiseCommandMessage,
    CompletePromiseCompletionNotificationMessage,
    CustomEntry,
    EndMessage,
    ErrorBehavior,
    ErrorMessage,
    Failure,
    FailureMetadata,
    FrameDecoder,
    Future,
    GetEagerStateCommandMessage,
    GetEagerStateKeysCommandMessage,
    GetInvocationOutputCommandMessage,
    GetInvocationOutputCompletionNotificationMessage,
    GetLazyStateCommandMessage,
    GetLazyStateCompletionNotificationMessage,
    GetLazyStateKeysCommandMessage,
    GetLazyStateKeysCompletionNotificationMessage,
    GetPromiseCommandMessage,
    GetPromiseCompletionNotificationMessage,
    Header,
    IdempotentRequestTarget,
    InputCommandMessage,
    Message,
    NotARestateRequest,
    OneWayCallCommandMessage,
    OutputCommandMessage,
    PeekPromiseCommandMessage,
    PeekPromiseCompletionNotificationMessage,
    ProposeRunCompletionAckMessage,
    ProposeRunCompletionMessage,
    ProtocolError,
    ProtocolVersion,
    ProtoStruct,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    SendSignalCommandMessage,
    SetStateCommandMessage,
    SignalNotificationMessage,
    SleepCommandMessage,
    SleepCompletionNotificationMessage,
    StartMessage,
    StateEntry,
    SuspensionMessage,
    UnsupportedProtocolVersion,
    WorkflowTarget,
    content_type,
    decode_message,
    encode_frame,
    encode_message,
    is_command,
    is_custom_entry,
    is_notification,
    message_type_id,
    parse_content_type,
    read_length_delimited,
    read_varint,
    skip_field,
    varint_size,
    write_varint,
)

pytestmark = pytest.mark.fast  # no server: the fast lane (pytest -m fast)

# --- Sample values: every field of every message set to something non-default ---

FAILURE = Failure(
    code=500,
    message="boom ☃",
    metadata=[FailureMetadata(key="k1", value="v1"), FailureMetadata(key="k2", value="")],
)
HEADERS = [Header(key="x-trace", value="abc"), Header(key="empty", value="")]
FUTURE = Future(
    waiting_completions=[1, 2, 300, 0xFFFF_FFFF],
    waiting_signals=[1, 17],
    waiting_named_signals=["approved", "ünïcode"],
    nested_futures=[
        Future(combinator_type=CombinatorType.FIRST_COMPLETED, waiting_signals=[5]),
        Future(
            combinator_type=CombinatorType.ALL_COMPLETED,
            nested_futures=[Future(waiting_completions=[9], combinator_type=-3)],
        ),
    ],
    combinator_type=CombinatorType.ALL_SUCCEEDED_OR_FIRST_FAILED,
)
IDEMPOTENT_TARGET = IdempotentRequestTarget(
    service_name="svc",
    service_key="key",
    handler_name="h",
    idempotency_key="idem",
    scope="tenant",
)
WORKFLOW_TARGET = WorkflowTarget(workflow_name="wf", workflow_key="wk", scope="tenant")

SAMPLES: list[Message] = [
    StartMessage(
        id=b"\x00\x01\xff",
        debug_id="inv_1abc",
        known_entries=7,
        state_map=[
            StateEntry(key=b"a", value=b"1"),
            StateEntry(key=b"empty", value=b""),
            StateEntry(key=b"", value=b"\x00"),
        ],
        partial_state=True,
        key="user-42",
        retry_count_since_last_stored_entry=3,
        duration_since_last_stored_entry=2**40,
        random_seed=2**64 - 1,
        scope="s",
        limit_key="lk",
        idempotency_key="ik",
    ),
    SuspensionMessage(
        waiting_completions=[1, 2],
        waiting_signals=[17],
        waiting_named_signals=["n"],
        awaiting_on=FUTURE,
    ),
    ErrorMessage(
        code=571,
        message="protocol violation",
        stacktrace="Traceback...",
        related_command_index=4,
        related_command_name="step",
        related_command_type=0x0411,
        next_retry_delay=1500,
        behavior=ErrorBehavior.PAUSE,
    ),
    EndMessage(),
    CommandAckMessage(command_index=12),
    ProposeRunCompletionMessage(result_completion_id=3, value=b"result"),
    ProposeRunCompletionMessage(result_completion_id=3, failure=FAILURE),
    AwaitingOnMessage(awaiting_on=FUTURE, executing_side_effects=True),
    ProposeRunCompletionAckMessage(completion_id=3),
    InputCommandMessage(headers=HEADERS, value=b'{"a":1}', name="input"),
    OutputCommandMessage(value=b"out", name="output"),
    OutputCommandMessage(failure=FAILURE, name="output"),
    GetLazyStateCommandMessage(key=b"k", result_completion_id=1, name="get"),
    GetLazyStateCompletionNotificationMessage(completion_id=1, void=True),
    GetLazyStateCompletionNotificationMessage(completion_id=1, value=b"v"),
    SetStateCommandMessage(key=b"k", value=b"v", name="set"),
    ClearStateCommandMessage(key=b"k", name="clear"),
    ClearAllStateCommandMessage(name="clear-all"),
    GetLazyStateKeysCommandMessage(result_completion_id=2, name="keys"),
    GetLazyStateKeysCompletionNotificationMessage(completion_id=2, state_keys=[b"a", b"", b"c"]),
    GetEagerStateCommandMessage(key=b"k", void=True, name="get"),
    GetEagerStateCommandMessage(key=b"k", value=b"v", name="get"),
    GetEagerStateKeysCommandMessage(value=[b"x", b"y"], name="keys"),
    GetPromiseCommandMessage(key="p", result_completion_id=4, name="promise"),
    GetPromiseCompletionNotificationMessage(completion_id=4, value=b"v"),
    GetPromiseCompletionNotificationMessage(completion_id=4, failure=FAILURE),
    PeekPromiseCommandMessage(key="p", result_completion_id=5, name="peek"),
    PeekPromiseCompletionNotificationMessage(completion_id=5, void=True),
    PeekPromiseCompletionNotificationMessage(completion_id=5, value=b"v"),
    PeekPromiseCompletionNotificationMessage(completion_id=5, failure=FAILURE),
    CompletePromiseCommandMessage(
        key="p", completion_value=b"done", result_completion_id=6, name="complete"
    ),
    CompletePromiseCommandMessage(
        key="p", completion_failure=FAILURE, result_completion_id=6, name="complete"
    ),
    CompletePromiseCompletionNotificationMessage(completion_id=6, void=True),
    CompletePromiseCompletionNotificationMessage(completion_id=6, failure=FAILURE),
    SleepCommandMessage(wake_up_time=1_700_000_000_000, result_completion_id=7, name="nap"),
    SleepCompletionNotificationMessage(completion_id=7, void=True),
    CallCommandMessage(
        service_name="Greeter",
        handler_name="greet",
        parameter=b"param",
        headers=HEADERS,
        key="k",
        idempotency_key="idem",
        scope="sc",
        limit_key="lim",
        invocation_id_notification_idx=8,
        result_completion_id=9,
        name="call",
    ),
    CallInvocationIdCompletionNotificationMessage(completion_id=8, invocation_id="inv_xyz"),
    CallCompletionNotificationMessage(completion_id=9, value=b"res"),
    CallCompletionNotificationMessage(completion_id=9, failure=FAILURE),
    OneWayCallCommandMessage(
        service_name="Greeter",
        handler_name="greet",
        parameter=b"param",
        invoke_time=1_700_000_000_000,
        headers=HEADERS,
        key="k",
        idempotency_key="idem",
        scope="sc",
        limit_key="lim",
        invocation_id_notification_idx=10,
        name="send",
    ),
    SendSignalCommandMessage(target_invocation_id="inv_t", idx=17, void=True, entry_name="sig"),
    SendSignalCommandMessage(target_invocation_id="inv_t", name="go", value=b"v", entry_name="s"),
    SendSignalCommandMessage(target_invocation_id="inv_t", idx=1, failure=FAILURE, entry_name="s"),
    RunCommandMessage(result_completion_id=11, name="side-effect"),
    RunCompletionNotificationMessage(completion_id=11, value=b"ran"),
    RunCompletionNotificationMessage(completion_id=11, failure=FAILURE),
    AttachInvocationCommandMessage(invocation_id="inv_a", result_completion_id=12, name="at"),
    AttachInvocationCommandMessage(
        idempotent_request_target=IDEMPOTENT_TARGET, result_completion_id=12, name="at"
    ),
    AttachInvocationCommandMessage(
        workflow_target=WORKFLOW_TARGET, result_completion_id=12, name="at"
    ),
    AttachInvocationCompletionNotificationMessage(completion_id=12, value=b"v"),
    AttachInvocationCompletionNotificationMessage(completion_id=12, failure=FAILURE),
    GetInvocationOutputCommandMessage(invocation_id="inv_a", result_completion_id=13, name="o"),
    GetInvocationOutputCommandMessage(
        idempotent_request_target=IDEMPOTENT_TARGET, result_completion_id=13, name="o"
    ),
    GetInvocationOutputCommandMessage(
        workflow_target=WORKFLOW_TARGET, result_completion_id=13, name="o"
    ),
    GetInvocationOutputCompletionNotificationMessage(completion_id=13, void=True),
    GetInvocationOutputCompletionNotificationMessage(completion_id=13, value=b"v"),
    GetInvocationOutputCompletionNotificationMessage(completion_id=13, failure=FAILURE),
    CompleteAwakeableCommandMessage(awakeable_id="sign_1abc", value=b"v", name="wake"),
    CompleteAwakeableCommandMessage(awakeable_id="prom_1abc", failure=FAILURE, name="wake"),
    SignalNotificationMessage(idx=1, void=True),
    SignalNotificationMessage(name="approved", value=b"yes"),
    SignalNotificationMessage(idx=17, failure=FAILURE),
]


def _default_of(cls: type[ProtoStruct], name: str) -> Any:
    info = next(f for f in msgspec.structs.fields(cls) if f.name == name)
    if info.default_factory is not msgspec.NODEFAULT:
        return info.default_factory()
    return info.default


def _set_fields(msg: ProtoStruct) -> set[str]:
    cls = type(msg)
    return {name for name in cls.__struct_fields__ if getattr(msg, name) != _default_of(cls, name)}


def test_samples_cover_every_message_type_and_field() -> None:
    by_class: dict[type[Message], set[str]] = {}
    for sample in SAMPLES:
        by_class.setdefault(type(sample), set()).update(_set_fields(sample))
    assert set(by_class) == set(MESSAGE_TYPES.values())
    for cls, seen in by_class.items():
        assert seen == set(cls.__struct_fields__), cls.__name__


def test_nested_samples_set_every_field() -> None:
    for nested in (FAILURE, FAILURE.metadata[0], HEADERS[0], IDEMPOTENT_TARGET, WORKFLOW_TARGET):
        assert _set_fields(nested) == set(type(nested).__struct_fields__)
    assert _set_fields(FUTURE) == set(Future.__struct_fields__)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    payload = encode_message(msg)
    assert decode_message(msg.TYPE, payload) == msg
    assert decode_message(msg.TYPE, memoryview(payload)) == msg

    frame = encode_frame(msg)
    assert frame[8:] == payload
    decoder = FrameDecoder()
    decoder.feed(frame)
    assert list(decoder.decode_messages()) == [(msg, 0)]
    decoder.close()


def test_defaults_round_trip_and_encode_empty() -> None:
    for cls in MESSAGE_TYPES.values():
        msg = cls()
        assert encode_message(msg) == b""
        assert decode_message(cls.TYPE, b"") == msg


def test_type_ids() -> None:
    assert StartMessage.TYPE == 0x0000
    assert ProposeRunCompletionAckMessage.TYPE == 0x0007
    assert CallInvocationIdCompletionNotificationMessage.TYPE == 0x800E
    assert CallCompletionNotificationMessage.TYPE == 0x800D
    assert SendSignalCommandMessage.TYPE == 0x0410
    assert SignalNotificationMessage.TYPE == 0xFBFF
    assert len(MESSAGE_TYPES) == 40
    for type_id, cls in MESSAGE_TYPES.items():
        name = cls.__name__
        assert is_command(type_id) == name.endswith("CommandMessage"), name
        assert is_notification(type_id) == name.endswith("NotificationMessage"), name
        assert not is_custom_entry(type_id)
    assert is_custom_entry(0xFC00) and is_custom_entry(0xFFFF)
    assert not is_command(0x8000) and is_command(0x7FFF) and not is_notification(0xFC00)


# --- Exact bytes, computed by hand from the proto ---


def test_start_message_bytes() -> None:
    msg = StartMessage(
        id=b"\x01\x02",
        debug_id="inv",
        known_entries=3,
        state_map=[StateEntry(key=b"k", value=b"")],
        partial_state=True,
        scope="",
    )
    expected = bytes.fromhex(
        "0a020102"  # 1: id, 2 bytes
        "1203696e76"  # 2: debug_id "inv"
        "1803"  # 3: known_entries 3
        "2203"
        "0a016b"  # 4: state_map entry {1: "k"}; the empty value is left off
        "2801"  # 5: partial_state true
        "5200"  # 10: scope, optional and present though empty
    )
    assert encode_message(msg) == expected
    assert decode_message(0, expected) == msg


def test_frame_header_bytes() -> None:
    assert encode_frame(EndMessage()) == bytes.fromhex("0003000000000000")
    frame = encode_frame(
        ProposeRunCompletionMessage(result_completion_id=3, value=b""), requested_ack=True
    )
    # type 5, flags 0x8000, length 4: 1: 3, then 14: empty bytes (oneof member set).
    assert frame == bytes.fromhex("000580000000000408037200")
    assert message_type_id(CustomEntry(type_id=0xFC05, payload=b"\x01")) == 0xFC05
    assert encode_frame(CustomEntry(type_id=0xFC05, payload=b"\x01")) == bytes.fromhex(
        "fc0500000000000101"
    )


def test_value_and_void_encodings() -> None:
    # An empty Value is still present: key 14 (0x72), length 0.
    assert encode_message(OutputCommandMessage(value=b"")) == b"\x72\x00"
    # Value{content="ab"} inside field 14: 72 04 0a 02 61 62.
    assert encode_message(OutputCommandMessage(value=b"ab")) == bytes.fromhex("72040a026162")
    # Void is an empty message at field 4.
    assert encode_message(SleepCompletionNotificationMessage(void=True)) == b"\x22\x00"
    # StateKeys present but empty vs absent.
    assert encode_message(GetEagerStateKeysCommandMessage(value=[])) == b"\x72\x00"
    assert encode_message(GetEagerStateKeysCommandMessage()) == b""
    decoded = decode_message(0x0408, b"\x72\x00")
    assert isinstance(decoded, GetEagerStateKeysCommandMessage) and decoded.value == []


def test_packed_and_unpacked_repeated_uint32() -> None:
    packed = bytes.fromhex("0a0301ac02")  # [1, 300]
    assert encode_message(Future(waiting_completions=[1, 300])) == packed
    unpacked = bytes.fromhex("080108ac02")
    assert decode_message(0x0001, unpacked) == SuspensionMessage(waiting_completions=[1, 300])


def test_negative_enum_round_trips_as_ten_byte_varint() -> None:
    payload = encode_message(ErrorMessage(behavior=-1))
    assert payload == b"\x48" + b"\xff" * 9 + b"\x01"
    assert decode_message(0x0002, payload) == ErrorMessage(behavior=-1)


def test_varint_primitives() -> None:
    for value in (0, 1, 127, 128, 300, 2**32, 2**64 - 1):
        out = bytearray()
        write_varint(out, value)
        assert read_varint(out, 0, len(out)) == (value, len(out))
    assert varint_size(0) == 1 and varint_size(127) == 1 and varint_size(128) == 2
    assert varint_size(2**64 - 1) == 10
    assert read_length_delimited(b"\x02ab!", 0, 4) == (1, 3)
    with pytest.raises(ProtocolError, match="claims 5 bytes but only 2 remain"):
        read_length_delimited(b"\x05ab", 0, 3)
    assert skip_field(b"\x00" * 8, 0, 8, 1) == 8
    assert skip_field(b"\x00" * 4, 0, 4, 5) == 4


# --- Protobuf leniency: unknown fields, repeats, oneof resolution ---


def _unknown_fields() -> bytes:
    return (
        bytes.fromhex("f80796ff01")  # field 127, varint
        + bytes.fromhex("f907")
        + b"\x01" * 8  # field 127, fixed64
        + bytes.fromhex("fa0703")
        + b"abc"  # field 127, length-delimited
        + bytes.fromhex("fd07")
        + b"\x02" * 4  # field 127, fixed32
        + bytes.fromhex("b80105")  # field 23, varint (low field number, 2-byte key)
    )


@pytest.mark.parametrize("msg", SAMPLES[:12], ids=lambda m: type(m).__name__)
def test_unknown_fields_are_skipped(msg: Message) -> None:
    payload = encode_message(msg)
    assert decode_message(msg.TYPE, _unknown_fields() + payload + _unknown_fields()) == msg


def test_unknown_fields_inside_nested_messages_are_skipped() -> None:
    failure = bytes.fromhex("0801") + _unknown_fields() + bytes.fromhex("120178")
    value = bytes.fromhex("0a0161") + _unknown_fields()
    payload = (
        bytes.fromhex("7a")
        + bytes([len(failure)])
        + failure
        + bytes.fromhex("72")
        + bytes([len(value)])
        + value  # value after failure wins
    )
    assert decode_message(0x0401, payload) == OutputCommandMessage(value=b"a")
    void = bytes.fromhex("22") + bytes([len(_unknown_fields())]) + _unknown_fields()
    assert decode_message(0x800C, void) == SleepCompletionNotificationMessage(void=True)


def test_last_oneof_member_wins() -> None:
    payload = encode_message(SignalNotificationMessage(idx=3, void=True)) + encode_message(
        SignalNotificationMessage(name="n", value=b"v")
    )
    assert decode_message(0xFBFF, payload) == SignalNotificationMessage(name="n", value=b"v")


def test_repeated_sub_message_merges() -> None:
    meta_a = FailureMetadata(key="a", value="1")
    meta_b = FailureMetadata(key="b", value="2")
    first = encode_message(OutputCommandMessage(failure=Failure(code=1, metadata=[meta_a])))
    second = encode_message(OutputCommandMessage(failure=Failure(message="m", metadata=[meta_b])))
    assert decode_message(0x0401, first + second) == OutputCommandMessage(
        failure=Failure(code=1, message="m", metadata=[meta_a, meta_b])
    )


# --- Framing ---


def test_frame_decoder_byte_by_byte() -> None:
    frames = b"".join(encode_frame(msg) for msg in SAMPLES)
    decoder = FrameDecoder()
    out: list[tuple[Message, int]] = []
    for i in range(len(frames)):
        decoder.feed(frames[i : i + 1])
        out.extend(decoder.decode_messages())
    decoder.close()
    assert out == [(msg, 0) for msg in SAMPLES]
    assert decoder.buffered == 0


def test_frame_decoder_many_frames_in_one_chunk_and_compaction() -> None:
    msg = RunCompletionNotificationMessage(completion_id=1, value=b"x" * 1000)
    frame = encode_frame(msg)
    decoder = FrameDecoder()
    count = 0
    for _ in range(300):
        decoder.feed(frame + frame[:10])
        decoder.feed(frame[10:])
        while (item := decoder.next_frame()) is not None:
            assert item[0] == msg.TYPE
            count += 1
    assert count == 600
    decoder.close()


def test_frame_decoder_returns_flags() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(ProposeRunCompletionMessage(value=b"v"), requested_ack=True))
    frame = decoder.next_frame()
    assert frame is not None
    assert frame[0] == 0x0005 and frame[1] == REQUESTED_ACK_FLAG
    assert decoder.next_frame() is None


def test_requested_ack_only_on_propose_run_completion() -> None:
    with pytest.raises(ProtocolError, match="only allowed on ProposeRunCompletionMessage"):
        encode_frame(RunCommandMessage(), requested_ack=True)


# --- Malformed input ---


def test_truncated_header_on_close() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00")
    assert decoder.next_frame() is None
    with pytest.raises(ProtocolError, match="3 of 8 header bytes"):
        decoder.close()


def test_length_beyond_body_on_close() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(EndMessage()) + struct.pack(">HHI", 0x0400, 0, 100) + b"abc")
    assert decoder.next_frame() == (0x0003, 0, b"")
    assert decoder.next_frame() is None
    with pytest.raises(ProtocolError, match="middle of a message: 11 of 108 bytes"):
        decoder.close()


def test_length_over_max_raises_on_feed() -> None:
    decoder = FrameDecoder(max_message_size=1024)
    with pytest.raises(ProtocolError, match=r"2000000 bytes exceeds .* 1024 bytes"):
        decoder.feed(struct.pack(">HHI", 0x0400, 0, 2_000_000))
    decoder = FrameDecoder(max_message_size=1024)
    decoder.feed(encode_frame(EndMessage()))
    decoder.feed(struct.pack(">HHI", 0x0400, 0, 1025))
    assert decoder.next_frame() is not None
    with pytest.raises(ProtocolError, match="1025 bytes exceeds"):
        decoder.next_frame()


def test_unknown_type_id() -> None:
    with pytest.raises(ProtocolError, match="unknown message type 0x0BAD"):
        decode_message(0x0BAD, b"")
    with pytest.raises(ProtocolError, match="0x8001"):
        decode_message(0x8001, b"")


def test_custom_entry() -> None:
    entry = decode_message(0xFC01, memoryview(b"\x08\x01"))
    assert entry == CustomEntry(type_id=0xFC01, payload=b"\x08\x01")
    assert encode_message(entry) == b"\x08\x01"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x18" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x18\xff\xff", "truncated varint"),
        (b"\x78\xff", "truncated varint"),  # in an unknown field being skipped
        (b"\xff" * 11, "longer than 10 bytes"),  # in the key itself
        (b"\x12\x05abc", r"truncated field StartMessage.debug_id: it claims 5 bytes .* 3 remain"),
        (b"\x12\xff", "truncated varint"),
        (b"\x12\x02\xff\xfe", r"invalid UTF-8 in string field StartMessage.debug_id"),
        (b"\x22\x02\x0a\x05", r"truncated field StateEntry.key"),
        (b"\x10\x01", r"field StartMessage.debug_id \(number 2\) has wire type 0, expected 2"),
        (b"\x7b", "groups"),
        (b"\x7c", "groups"),
        (b"\x7e", "invalid protobuf wire type 6"),
        (b"\x00\x00", "invalid field number 0"),
        (b"\x79\x00\x00", "truncated fixed64"),
        (b"\x7d\x00", "truncated fixed32"),
    ],
)
def test_malformed_start_message(payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as info:
        decode_message(0x0000, payload)
    assert "StartMessage (type 0x0000)" in str(info.value)
    assert info.value.code == 571


def test_invalid_utf8_in_nested_field_names_it() -> None:
    failure = b"\x12\x01\xc3"  # Failure.message with a cut multi-byte character
    payload = b"\x7a" + bytes([len(failure)]) + failure
    with pytest.raises(ProtocolError, match=r"OutputCommandMessage.*Failure\.message"):
        decode_message(0x0401, payload)


def test_deep_nesting_is_rejected() -> None:
    body = b""
    for _ in range(150):
        body = b"\x22" + _varint(len(body)) + body
    with pytest.raises(ProtocolError, match="nested more than 100"):
        decode_message(0x0006, b"\x0a" + _varint(len(body)) + body)


def _varint(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def test_encoding_rejects_bad_values() -> None:
    with pytest.raises(ProtocolError, match="only one field of oneof 'result'"):
        encode_message(OutputCommandMessage(value=b"v", failure=FAILURE))
    with pytest.raises(ProtocolError, match="only one field of oneof 'result'"):
        encode_message(GetEagerStateCommandMessage(void=True, value=b""))
    with pytest.raises(ProtocolError, match=r"RunCommandMessage\.result_completion_id"):
        encode_message(RunCommandMessage(result_completion_id=-1))
    with pytest.raises(ProtocolError, match=r"Future\.waiting_completions"):
        encode_message(Future(waiting_completions=[2**32]))
    with pytest.raises(ProtocolError, match="expected Failure, got Header"):
        encode_message(OutputCommandMessage(failure=Header()))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=r"RunCommandMessage\.name"):
        encode_message(RunCommandMessage(name=b"bytes"))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=r"RunCommandMessage\.name"):
        encode_message(RunCommandMessage(name="\udc80"))


# --- Content types ---


def test_content_types() -> None:
    assert content_type(ProtocolVersion.V7) == "application/vnd.restate.invocation.v7"
    assert MIN_PROTOCOL_VERSION == ProtocolVersion.V5 and int(MAX_PROTOCOL_VERSION) == 7
    for version in ProtocolVersion:
        assert parse_content_type(content_type(version)) is version
    assert parse_content_type("Application/Vnd.Restate.Invocation.V6; x=1") is ProtocolVersion.V6
    for unsupported in (
        "application/vnd.restate.invocation.v4",
        "application/vnd.restate.invocation.v99",
    ):
        with pytest.raises(UnsupportedProtocolVersion) as info:
            parse_content_type(unsupported)
        assert "5 to 7" in info.value.message
    for foreign in (None, "", "application/json"):
        with pytest.raises(NotARestateRequest) as not_restate:
            parse_content_type(foreign)
        assert "Restate ingress" in not_restate.value.message


# --- Fuzzing ---

_KNOWN_IDS = sorted(MESSAGE_TYPES)


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    """Either raw noise or well-framed noise, so decode_message sees every type id."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        type_id = draw(st.one_of(st.sampled_from(_KNOWN_IDS), st.integers(0, 0xFFFF)))
        if draw(st.booleans()):
            payload = encode_message(draw(st.sampled_from(SAMPLES)))
            cut = draw(st.integers(0, len(payload)))
            payload = payload[:cut] + draw(st.binary(max_size=16))
        else:
            payload = draw(st.binary(max_size=128))
        out += struct.pack(">HHI", type_id, draw(st.integers(0, 0xFFFF)), len(payload))
        out += payload
    out += draw(st.binary(max_size=16))
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(data=_streams(), chunk=st.integers(1, 64))
def test_fuzz_only_protocol_errors_escape(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_message_size=4096)
    try:
        for start in range(0, len(data), chunk):
            decoder.feed(data[start : start + chunk])
            while (frame := decoder.next_frame()) is not None:
                type_id, _flags, payload = frame
                with contextlib.suppress(ProtocolError):
                    decode_message(type_id, payload)
        decoder.close()
    except ProtocolError:
        pass
