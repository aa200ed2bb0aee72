"""Our protocol messages against an independent schema, run through Google's protobuf.

``framework/_protocol`` encodes and decodes protobuf by hand, from field tables. Round trips
through our own codec cannot catch a table that is wrong in the same way on both sides (a
wrong field number, a missing oneof, a kind that is length-delimited where the protocol says
varint). So this module holds our tables up against ``tests/protocol/restate_protocol.proto``,
written separately from the public protocol and compiled with protoc when the tests run:

* the declarations themselves, field by field, through the protobuf descriptors;
* the wire, in both directions: our bytes parsed by protobuf, protobuf's bytes decoded by us,
  for every message class, with hypothesis-drawn and hand-picked values;
* the bytes themselves: for the canonical encodings both sides produce (fields in number
  order, proto3 defaults omitted, repeated uint32 packed) they must be identical;
* merging: a concatenation of two encodings must decode as protobuf merges it;
* the frame type ids, against a table copied by hand from the public protocol.

Message classes are found by walking ``framework._protocol.messages``, so a message added
there without a counterpart in the .proto fails here rather than going untested.
"""

from __future__ import annotations

import enum
import importlib.util
import itertools
import struct
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf", reason="needs protobuf (the test extra)")
pytest.importorskip("grpc_tools", reason="needs grpcio-tools (the test extra)")

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message as PbMessage
from grpc_tools import protoc as grpc_protoc  # type: ignore[import-untyped]  # no stubs exist

from framework._protocol import codec, messages
from framework._protocol.codec import decode_message, encode_frame, encode_message
from framework._protocol.messages import (
    KIND_BOOL,
    KIND_BYTES,
    KIND_ENUM,
    KIND_MESSAGE,
    KIND_REPEATED_BYTES,
    KIND_REPEATED_MESSAGE,
    KIND_REPEATED_STRING,
    KIND_REPEATED_UINT32,
    KIND_STATE_KEYS,
    KIND_STRING,
    KIND_UINT32,
    KIND_UINT64,
    KIND_VALUE,
    KIND_VOID,
    MESSAGE_TYPES,
    CustomEntry,
    Field,
    Message,
    ProposeRunCompletionMessage,
    ProtoStruct,
    is_command,
    is_custom_entry,
    is_notification,
)

pytestmark = pytest.mark.fast  # no server and no child process: protoc runs in-process

PROTO_FILE = Path(__file__).resolve().parent / "protocol" / "restate_protocol.proto"
PB_MODULE_NAME = "restate_protocol_pb2"

# The frame type ids of the public protocol, written out here by hand rather than read from
# our registry, so that a typo in a TYPE constant cannot agree with itself. 0x040F is not
# assigned by the protocol.
PUBLIC_TYPE_IDS: dict[int, str] = {
    0x0000: "StartMessage",
    0x0001: "SuspensionMessage",
    0x0002: "ErrorMessage",
    0x0003: "EndMessage",
    0x0004: "CommandAckMessage",
    0x0005: "ProposeRunCompletionMessage",
    0x0006: "AwaitingOnMessage",
    0x0007: "ProposeRunCompletionAckMessage",
    0x0400: "InputCommandMessage",
    0x0401: "OutputCommandMessage",
    0x0402: "GetLazyStateCommandMessage",
    0x0403: "SetStateCommandMessage",
    0x0404: "ClearStateCommandMessage",
    0x0405: "ClearAllStateCommandMessage",
    0x0406: "GetLazyStateKeysCommandMessage",
    0x0407: "GetEagerStateCommandMessage",
    0x0408: "GetEagerStateKeysCommandMessage",
    0x0409: "GetPromiseCommandMessage",
    0x040A: "PeekPromiseCommandMessage",
    0x040B: "CompletePromiseCommandMessage",
    0x040C: "SleepCommandMessage",
    0x040D: "CallCommandMessage",
    0x040E: "OneWayCallCommandMessage",
    0x0410: "SendSignalCommandMessage",
    0x0411: "RunCommandMessage",
    0x0412: "AttachInvocationCommandMessage",
    0x0413: "GetInvocationOutputCommandMessage",
    0x0414: "CompleteAwakeableCommandMessage",
    0x8002: "GetLazyStateCompletionNotificationMessage",
    0x8006: "GetLazyStateKeysCompletionNotificationMessage",
    0x8009: "GetPromiseCompletionNotificationMessage",
    0x800A: "PeekPromiseCompletionNotificationMessage",
    0x800B: "CompletePromiseCompletionNotificationMessage",
    0x800C: "SleepCompletionNotificationMessage",
    0x800D: "CallCompletionNotificationMessage",
    0x800E: "CallInvocationIdCompletionNotificationMessage",
    0x8011: "RunCompletionNotificationMessage",
    0x8012: "AttachInvocationCompletionNotificationMessage",
    0x8013: "GetInvocationOutputCompletionNotificationMessage",
    0xFBFF: "SignalNotificationMessage",
}


# --- Finding our classes ---


def _our_classes() -> list[type[ProtoStruct]]:
    """Every struct in the messages module that has a protobuf body.

    The private wrappers (``_Value``, ``_StateKeys``, ``_Void``) count: the codec parses
    their bodies with the same table machinery. CustomEntry does not: its payload is opaque
    by definition, so there is no schema to hold it against.
    """
    found: list[type[ProtoStruct]] = []
    for obj in vars(messages).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, ProtoStruct)
            and obj.__module__ == messages.__name__
            and obj not in (ProtoStruct, Message, CustomEntry)
        ):
            found.append(obj)
    return sorted(found, key=lambda cls: cls.__name__)


OUR_CLASSES = _our_classes()
OURS_BY_NAME = {cls.__name__: cls for cls in OUR_CLASSES}
OUR_ENUMS: dict[str, type[enum.IntEnum]] = {
    obj.__name__: obj
    for obj in vars(messages).values()
    if isinstance(obj, type) and issubclass(obj, enum.IntEnum) and obj is not enum.IntEnum
}
REPEATED_SCALAR_KINDS = frozenset({KIND_REPEATED_UINT32, KIND_REPEATED_STRING, KIND_REPEATED_BYTES})


def _proto_name(cls: type[ProtoStruct]) -> str:
    # The flattened wrappers carry a leading underscore only to keep them private.
    return cls.__name__.lstrip("_")


def _ours_decode(cls: type[ProtoStruct], data: bytes) -> ProtoStruct:
    """Decode ``data`` as ``cls`` with our codec.

    Top-level messages go through the public ``decode_message``. Nested structs have no
    public entry point of their own, so they use the codec's internal struct decoder: going
    through a parent message instead would hide which class disagrees.
    """
    if issubclass(cls, Message):
        return decode_message(cls.TYPE, data)
    return codec._decode_struct(cls, data, 0, len(data), 0, None)


# --- The compiled schema ---


@pytest.fixture(scope="session")
def pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The .proto compiled by protoc (from grpcio-tools) and imported.

    Compiled per run instead of checked in, so the generated code always matches the
    installed protobuf runtime and nobody edits the generated file by hand.
    """
    out = tmp_path_factory.mktemp("protoc")
    # The same entry point as `python -m grpc_tools.protoc`, called in-process so that the
    # fast lane stays free of child processes. Its diagnostics go to stderr, which pytest
    # shows on failure.
    status = grpc_protoc.main(
        ["grpc_tools.protoc", f"--python_out={out}", f"-I{PROTO_FILE.parent}", str(PROTO_FILE)]
    )
    if status != 0:
        pytest.fail(f"protoc could not compile {PROTO_FILE} (exit {status}); see stderr")
    spec = importlib.util.spec_from_file_location(PB_MODULE_NAME, out / f"{PB_MODULE_NAME}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _all_descriptors(pb: ModuleType) -> Iterator[Descriptor]:
    pending: list[Descriptor] = list(pb.DESCRIPTOR.message_types_by_name.values())
    while pending:
        descriptor = pending.pop()
        yield descriptor
        pending.extend(descriptor.nested_types)


def _descriptors_by_name(pb: ModuleType) -> dict[str, Descriptor]:
    """Short name -> descriptor, nested ones included (StateEntry lives inside StartMessage)."""
    by_name: dict[str, Descriptor] = {}
    for descriptor in _all_descriptors(pb):
        assert descriptor.name not in by_name, f"{descriptor.name} is declared twice"
        by_name[descriptor.name] = descriptor
    return by_name


def _pb_class(pb: ModuleType, cls: type[ProtoStruct]) -> type[PbMessage]:
    descriptor = _descriptors_by_name(pb)[_proto_name(cls)]
    # Walk from the file scope down through any enclosing messages.
    chain: list[str] = []
    scope: Descriptor | None = descriptor
    while scope is not None:
        chain.append(scope.name)
        scope = scope.containing_type
    found: Any = pb
    for name in reversed(chain):
        found = getattr(found, name)
    return found  # type: ignore[no-any-return]


# --- Converting between our structs and protobuf messages ---


def _to_pb(pb_cls: type[PbMessage], ours: ProtoStruct) -> PbMessage:
    out = pb_cls()
    _fill_pb(out, ours)
    return out


def _fill_pb(target: Any, ours: ProtoStruct) -> None:
    """Set on ``target`` every field ``ours`` carries, with protobuf's own presence rules.

    ``None`` is "absent" in our structs; for the flattened wrappers "present" has to be made
    explicit with SetInParent, since an empty Value or StateKeys assigns nothing.
    """
    for f in type(ours).FIELDS:
        value = getattr(ours, f.name)
        if value is None:
            continue
        if f.kind == KIND_VALUE:
            wrapper = getattr(target, f.name)
            wrapper.SetInParent()
            wrapper.content = value
        elif f.kind == KIND_VOID:
            if value:
                getattr(target, f.name).SetInParent()
        elif f.kind == KIND_STATE_KEYS:
            wrapper = getattr(target, f.name)
            wrapper.SetInParent()
            wrapper.keys.extend(value)
        elif f.kind == KIND_MESSAGE:
            sub = getattr(target, f.name)
            sub.SetInParent()
            _fill_pb(sub, value)
        elif f.kind == KIND_REPEATED_MESSAGE:
            container = getattr(target, f.name)
            for item in value:
                _fill_pb(container.add(), item)
        elif f.kind in REPEATED_SCALAR_KINDS:
            getattr(target, f.name).extend(value)
        else:
            setattr(target, f.name, value)


def _explicit_presence(f: Field) -> bool:
    """Whether absence of ``f`` is observable (HasField works): the fields we map to None."""
    return (
        f.optional
        or f.kind in (KIND_VALUE, KIND_MESSAGE, KIND_STATE_KEYS)
        or (f.oneof is not None and f.kind != KIND_VOID)
    )


def _from_pb(cls: type[ProtoStruct], source: Any) -> ProtoStruct:
    """Read a protobuf message into ``cls``, the way our decoder should have produced it."""
    kwargs: dict[str, Any] = {}
    for f in cls.FIELDS:
        if _explicit_presence(f) and not source.HasField(f.name):
            kwargs[f.name] = None
            continue
        raw = getattr(source, f.name)
        if f.kind == KIND_VALUE:
            kwargs[f.name] = raw.content
        elif f.kind == KIND_VOID:
            kwargs[f.name] = source.HasField(f.name)
        elif f.kind == KIND_STATE_KEYS:
            kwargs[f.name] = list(raw.keys)
        elif f.kind == KIND_MESSAGE:
            kwargs[f.name] = _from_pb(OURS_BY_NAME[_msg(f)], raw)
        elif f.kind == KIND_REPEATED_MESSAGE:
            kwargs[f.name] = [_from_pb(OURS_BY_NAME[_msg(f)], item) for item in raw]
        elif f.kind in REPEATED_SCALAR_KINDS:
            kwargs[f.name] = list(raw)
        else:
            kwargs[f.name] = raw
    return cls(**kwargs)


def _msg(f: Field) -> str:
    assert f.message is not None, f"{f.name}: a message-kind field without its class"
    return f.message


def _differences(expected: Any, actual: Any, path: str) -> list[str]:
    """Field-by-field comparison; msgspec Structs get no per-field diff from pytest."""
    if isinstance(expected, msgspec.Struct) and isinstance(actual, msgspec.Struct):
        if type(expected) is not type(actual):
            return [f"{path}: {type(expected).__name__} != {type(actual).__name__}"]
        found: list[str] = []
        for name in expected.__struct_fields__:
            found += _differences(getattr(expected, name), getattr(actual, name), f"{path}.{name}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items != {len(actual)} items"]
        found = []
        for i, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found += _differences(left, right, f"{path}[{i}]")
        return found
    # Types must match too (bytes vs str, bool vs int), except that an IntEnum member may
    # stand for its plain int: that is a presentation choice, not a wire difference.
    same_type = type(expected) is type(actual) or (_plain_int(expected) and _plain_int(actual))
    if not same_type or expected != actual:
        return [f"{path}: {expected!r} != {actual!r}"]
    return []


def _plain_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_agreement(pb: ModuleType, ours: ProtoStruct) -> None:
    """Both directions on the wire, then the bytes; every disagreement is reported at once."""
    cls = type(ours)
    name = cls.__name__
    pb_cls = _pb_class(pb, cls)
    problems: list[str] = []

    # (a) our encoding, as protobuf reads it.
    ours_bytes = encode_message(ours)
    parsed = pb_cls.FromString(ours_bytes)
    problems += [f"ours->protobuf {d}" for d in _differences(ours, _from_pb(cls, parsed), name)]

    # (b) protobuf's encoding of the same values, as we read it.
    pb_bytes = _to_pb(pb_cls, ours).SerializeToString(deterministic=True)
    decoded = _ours_decode(cls, pb_bytes)
    problems += [f"protobuf->ours {d}" for d in _differences(ours, decoded, name)]

    # (c) Both serializers emit fields in number order, omit proto3 defaults and pack
    # repeated uint32, so for these inputs even the bytes must match. (They could only
    # legitimately differ for unknown fields or map fields, and the protocol has neither.)
    if ours_bytes != pb_bytes:
        problems.append(f"bytes: ours {ours_bytes.hex()} != protobuf {pb_bytes.hex()}")

    assert not problems, "\n".join(problems)


# --- Values for every field ---

U32_EDGES = [0, 1, 127, 128, 300, 16_383, 16_384, 2**31 - 1, 2**31, 2**32 - 1]
U64_EDGES = [*U32_EDGES, 2**32, 2**35 + 7, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
# Enums are open int32s: values the .proto does not name, and negatives (sign-extended to
# ten bytes on the wire), must survive too.
I32_EDGES = [0, 1, 2, 3, 4, 99, -1, -(2**31), 2**31 - 1]
TEXT_EDGES = ["", "a", "\x00", "ä", "日本語", "🦀 crab", "\u200b", "e\u0301"]
BYTES_EDGES = [b"", b"\x00", b"\xff\xfe", b"\x0a\x00", bytes(range(256))]

_MAX_DEPTH = 2  # Future nests itself; two levels show merging of nested lists, no more.
_SCALAR_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {
    KIND_UINT32: st.one_of(st.sampled_from(U32_EDGES), st.integers(0, 2**32 - 1)),
    KIND_UINT64: st.one_of(st.sampled_from(U64_EDGES), st.integers(0, 2**64 - 1)),
    KIND_BOOL: st.booleans(),
    KIND_ENUM: st.one_of(st.sampled_from(I32_EDGES), st.integers(-(2**31), 2**31 - 1)),
    KIND_STRING: st.one_of(st.sampled_from(TEXT_EDGES), st.text(max_size=16)),
    KIND_BYTES: st.one_of(st.sampled_from(BYTES_EDGES), st.binary(max_size=24)),
}
_ELEMENT_KIND = {
    KIND_REPEATED_UINT32: KIND_UINT32,
    KIND_REPEATED_STRING: KIND_STRING,
    KIND_REPEATED_BYTES: KIND_BYTES,
}
_strategy_cache: dict[tuple[type[ProtoStruct], int], st.SearchStrategy[ProtoStruct]] = {}


def _present_value(f: Field, depth: int) -> st.SearchStrategy[Any]:
    """Values for ``f`` that are all "set" (what a oneof member or optional carries)."""
    if f.kind == KIND_VOID:
        return st.just(True)
    if f.kind == KIND_VALUE:
        return _SCALAR_STRATEGIES[KIND_BYTES]
    if f.kind == KIND_STATE_KEYS:
        return st.lists(_SCALAR_STRATEGIES[KIND_BYTES], max_size=3)
    if f.kind == KIND_MESSAGE:
        return _struct_strategy(OURS_BY_NAME[_msg(f)], depth + 1)
    return _SCALAR_STRATEGIES[f.kind]


def _field_strategy(f: Field, depth: int) -> st.SearchStrategy[Any]:
    """Values for a field outside any oneof, absent ones included."""
    if f.kind == KIND_VOID:
        return st.booleans()
    if f.kind == KIND_REPEATED_MESSAGE:
        if depth >= _MAX_DEPTH:
            return st.just([])
        return st.lists(_struct_strategy(OURS_BY_NAME[_msg(f)], depth + 1), max_size=3)
    if f.kind in _ELEMENT_KIND:
        return st.lists(_SCALAR_STRATEGIES[_ELEMENT_KIND[f.kind]], max_size=3)
    if _explicit_presence(f):
        if f.kind == KIND_MESSAGE and depth >= _MAX_DEPTH:
            return st.none()
        return st.none() | _present_value(f, depth)
    return _SCALAR_STRATEGIES[f.kind]


def _struct_strategy(cls: type[ProtoStruct], depth: int = 0) -> st.SearchStrategy[ProtoStruct]:
    """Instances of ``cls`` derived from its FIELDS: each oneof gets none or one member set."""
    key = (cls, depth)
    cached = _strategy_cache.get(key)
    if cached is not None:
        return cached
    plain: dict[str, st.SearchStrategy[Any]] = {}
    groups: dict[str, list[Field]] = {}
    for f in cls.FIELDS:
        if f.oneof is None:
            plain[f.name] = _field_strategy(f, depth)
        else:
            groups.setdefault(f.oneof, []).append(f)
    parts: list[st.SearchStrategy[dict[str, Any]]] = [st.fixed_dictionaries(plain)]
    for members in groups.values():
        branches: list[st.SearchStrategy[dict[str, Any]]] = [st.just({})]
        for member in members:
            if member.kind == KIND_MESSAGE and depth >= _MAX_DEPTH:
                continue
            branches.append(st.fixed_dictionaries({member.name: _present_value(member, depth)}))
        parts.append(st.one_of(branches))

    def build(chunks: tuple[dict[str, Any], ...]) -> ProtoStruct:
        kwargs: dict[str, Any] = {}
        for chunk in chunks:
            kwargs.update(chunk)
        return cls(**kwargs)

    strategy = st.tuples(*parts).map(build)
    _strategy_cache[key] = strategy
    return strategy


# --- Hand-picked instances: every field set, each oneof branch in turn ---


def _rich_value(f: Field, depth: int, zero: bool) -> Any:
    """A value for ``f`` that is never the field's default.

    With ``zero`` the value is instead the type's zero, but still present wherever presence
    is explicit: proto3 drops implicit zeros yet must keep ``optional``/oneof ones.
    """
    kind = f.kind
    if kind == KIND_UINT32:
        return 0 if zero else 2**32 - 1 - f.number
    if kind == KIND_UINT64:
        return 0 if zero else 2**64 - 1 - f.number
    if kind == KIND_BOOL:
        return not zero
    if kind == KIND_ENUM:
        return 0 if zero else -2
    if kind == KIND_STRING:
        return "" if zero else f"{f.name}·ä🦀"
    if kind in (KIND_BYTES, KIND_VALUE):
        return b"" if zero else b"\x00\xff" + f.name.encode()
    if kind == KIND_VOID:
        return True
    if kind == KIND_STATE_KEYS:
        return [] if zero else [b"k1", b"", b"\xff"]
    if kind == KIND_REPEATED_UINT32:
        return [] if zero else [0, 1, 2**32 - 1]
    if kind == KIND_REPEATED_STRING:
        return [] if zero else ["", "ü", "signal"]
    if kind == KIND_REPEATED_BYTES:
        return [] if zero else [b"", b"x"]
    sub = OURS_BY_NAME[_msg(f)]
    if kind == KIND_MESSAGE:
        return next(_rich_instances(sub, depth + 1, zero))
    if zero or depth >= _MAX_DEPTH:
        return []
    return list(itertools.islice(_rich_instances(sub, depth + 1, zero), 2))


def _rich_instances(
    cls: type[ProtoStruct], depth: int = 0, zero: bool = False
) -> Iterator[ProtoStruct]:
    """Every field populated, once per combination of oneof branches (none set included)."""
    plain = {
        f.name: _rich_value(f, depth, zero)
        for f in cls.FIELDS
        if f.oneof is None and not (f.kind == KIND_MESSAGE and depth >= _MAX_DEPTH)
    }
    groups: dict[str, list[Field]] = {}
    for f in cls.FIELDS:
        if f.oneof is not None and not (f.kind == KIND_MESSAGE and depth >= _MAX_DEPTH):
            groups.setdefault(f.oneof, []).append(f)
    choices: list[list[Field | None]] = [[*members, None] for members in groups.values()]
    for picked in itertools.product(*choices):
        kwargs = dict(plain)
        for member in picked:
            if member is not None:
                kwargs[member.name] = _rich_value(member, depth, zero)
        yield cls(**kwargs)


def _ids(cls: type[ProtoStruct]) -> str:
    return cls.__name__


# --- The tests ---


def test_every_class_has_a_proto_counterpart_and_back(pb: ModuleType) -> None:
    ours = {_proto_name(cls) for cls in OUR_CLASSES}
    theirs = set(_descriptors_by_name(pb))
    assert ours - theirs == set(), "messages with no counterpart in restate_protocol.proto"
    assert theirs - ours == set(), "messages in restate_protocol.proto that we do not declare"
    # Every registered frame type is among the classes checked below.
    assert set(MESSAGE_TYPES.values()) <= set(OUR_CLASSES)


def _pb_field_table(descriptor: Descriptor) -> dict[int, tuple[Any, ...]]:
    """number -> (name, type, repeated, message type, oneof, optional), from the .proto."""
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    table: dict[int, tuple[Any, ...]] = {}
    for field in proto.field:
        oneof = None
        # proto3 `optional` is modelled as a one-member synthetic oneof; that is not a oneof
        # in the protocol's sense, and our tables call it `optional` instead.
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneof = proto.oneof_decl[field.oneof_index].name
        table[field.number] = (
            field.name,
            _FDP.Type.Name(field.type),
            field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
            field.type_name.rsplit(".", 1)[-1] or None,
            oneof,
            field.proto3_optional,
        )
    return table


_FDP = descriptor_pb2.FieldDescriptorProto
# Our field kind -> (protobuf type, repeated, message type name when it is a fixed wrapper).
_KIND_SHAPE: dict[int, tuple[_FDP.Type.ValueType, bool, str | None]] = {
    KIND_UINT32: (_FDP.TYPE_UINT32, False, None),
    KIND_UINT64: (_FDP.TYPE_UINT64, False, None),
    KIND_BOOL: (_FDP.TYPE_BOOL, False, None),
    KIND_ENUM: (_FDP.TYPE_ENUM, False, None),
    KIND_STRING: (_FDP.TYPE_STRING, False, None),
    KIND_BYTES: (_FDP.TYPE_BYTES, False, None),
    KIND_VALUE: (_FDP.TYPE_MESSAGE, False, "Value"),
    KIND_VOID: (_FDP.TYPE_MESSAGE, False, "Void"),
    KIND_STATE_KEYS: (_FDP.TYPE_MESSAGE, False, "StateKeys"),
    KIND_MESSAGE: (_FDP.TYPE_MESSAGE, False, None),
    KIND_REPEATED_UINT32: (_FDP.TYPE_UINT32, True, None),
    KIND_REPEATED_STRING: (_FDP.TYPE_STRING, True, None),
    KIND_REPEATED_BYTES: (_FDP.TYPE_BYTES, True, None),
    KIND_REPEATED_MESSAGE: (_FDP.TYPE_MESSAGE, True, None),
}


def _our_field_table(
    cls: type[ProtoStruct], pb_table: dict[int, tuple[Any, ...]]
) -> dict[int, tuple[Any, ...]]:
    table: dict[int, tuple[Any, ...]] = {}
    for f in cls.FIELDS:
        pb_type, repeated, wrapper = _KIND_SHAPE[f.kind]
        type_name = wrapper or f.message
        if f.kind == KIND_ENUM:
            # Our tables do not say which enum a field holds: accept the .proto's choice as
            # long as it is one of the enums we declare too.
            named = pb_table.get(f.number, (None,) * 4)[3]
            type_name = named if named in OUR_ENUMS else "<an enum we declare>"
        table[f.number] = (
            f.name,
            _FDP.Type.Name(pb_type),
            repeated,
            type_name,
            f.oneof,
            f.optional,
        )
    return table


@pytest.mark.parametrize("cls", OUR_CLASSES, ids=_ids)
def test_field_declarations_match_the_proto(pb: ModuleType, cls: type[ProtoStruct]) -> None:
    pb_table = _pb_field_table(_descriptors_by_name(pb)[_proto_name(cls)])
    ours = _our_field_table(cls, pb_table)
    mismatches = [
        f"field {number}: ours {ours.get(number)} != proto {pb_table.get(number)}"
        for number in sorted(set(ours) | set(pb_table))
        if ours.get(number) != pb_table.get(number)
    ]
    assert not mismatches, f"{cls.__name__} (name, type, repeated, message, oneof, optional):\n" + (
        "\n".join(mismatches)
    )


def test_enums_match_the_proto(pb: ModuleType) -> None:
    ours = {
        cls.__name__: {member.name: member.value for member in cls} for cls in OUR_ENUMS.values()
    }
    theirs = {
        name: {value.name: value.number for value in descriptor.values}
        for name, descriptor in pb.DESCRIPTOR.enum_types_by_name.items()
    }
    assert ours == theirs


def test_type_ids_match_the_public_protocol() -> None:
    registry = {type_id: cls.__name__ for type_id, cls in MESSAGE_TYPES.items()}
    assert registry == PUBLIC_TYPE_IDS
    for type_id, cls in MESSAGE_TYPES.items():
        # The id must also be what the frame header actually carries.
        header_type, flags, length = struct.unpack_from(">HHI", encode_frame(cls()))
        assert (header_type, flags, length) == (type_id, 0, 0), cls.__name__
        kind = "command" if cls.__name__.endswith("CommandMessage") else None
        if cls.__name__.endswith("NotificationMessage"):
            kind = "notification"
        assert is_command(type_id) == (kind == "command"), cls.__name__
        assert is_notification(type_id) == (kind == "notification"), cls.__name__
        assert not is_custom_entry(type_id), cls.__name__


def test_requested_ack_is_the_top_bit_of_the_flags() -> None:
    # The public framing puts REQUESTED_ACK in the most significant bit of the 16 flag bits.
    frame = encode_frame(ProposeRunCompletionMessage(result_completion_id=1), requested_ack=True)
    header_type, flags, _length = struct.unpack_from(">HHI", frame)
    assert (header_type, flags) == (0x0005, 0x8000)


@pytest.mark.parametrize("zero", [False, True], ids=["rich", "zero-but-present"])
@pytest.mark.parametrize("cls", OUR_CLASSES, ids=_ids)
def test_hand_picked_values_agree(pb: ModuleType, cls: type[ProtoStruct], zero: bool) -> None:
    for instance in _rich_instances(cls, zero=zero):
        _check_agreement(pb, instance)


@pytest.mark.parametrize("cls", OUR_CLASSES, ids=_ids)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_drawn_values_agree(pb: ModuleType, cls: type[ProtoStruct], data: st.DataObject) -> None:
    _check_agreement(pb, data.draw(_struct_strategy(cls), label=cls.__name__))


@pytest.mark.parametrize("cls", OUR_CLASSES, ids=_ids)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_concatenated_encodings_merge_like_protobuf(
    pb: ModuleType, cls: type[ProtoStruct], data: st.DataObject
) -> None:
    """Protobuf parses two encodings back to back as one message merged from both.

    That decides what a repeated singular field, a second sub-message or a switch between
    oneof members turns into, which our decoder implements by hand.
    """
    first = data.draw(_struct_strategy(cls), label="first")
    second = data.draw(_struct_strategy(cls), label="second")
    joined = encode_message(first) + encode_message(second)
    merged = _pb_class(pb, cls)()
    merged.MergeFromString(joined)
    expected = _from_pb(cls, merged)
    problems = _differences(expected, _ours_decode(cls, joined), cls.__name__)
    assert not problems, "\n".join(problems)
