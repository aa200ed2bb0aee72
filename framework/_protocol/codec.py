"""Turns protocol messages into framed bytes and back, driven by the messages' field tables."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

from framework._protocol.errors import ProtocolError
from framework._protocol.messages import (
    KIND_BOOL,
    KIND_BYTES,
    KIND_ENUM,
    KIND_FIRST_LEN,
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
    Message,
    ProposeRunCompletionMessage,
    ProtoStruct,
    _StateKeys,
    _Value,
    _Void,
    is_custom_entry,
)
from framework._protocol.wire import (
    MAX_UINT32,
    MAX_UINT64,
    Buffer,
    read_varint,
    skip_field,
    varint_size,
    write_length_delimited,
    write_varint,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HEADER_SIZE",
    "REQUESTED_ACK_FLAG",
    "FrameDecoder",
    "decode_message",
    "encode_frame",
    "encode_message",
    "message_type_id",
]

_HEADER: Final = struct.Struct(">HHI")  # type, flags, payload length
HEADER_SIZE: Final = _HEADER.size

# Top bit of the 16-bit flags; meaningful only on ProposeRunCompletionMessage (v7).
REQUESTED_ACK_FLAG: Final = 0x8000

DEFAULT_MAX_MESSAGE_SIZE: Final = 32 * 1024 * 1024

# Same bound as protobuf's default recursion limit: Future trees nest, and a hostile
# payload must not be able to exhaust the Python stack.
_MAX_DEPTH: Final = 100

# Drop the consumed prefix of the decoder's buffer only once it is both this large and at
# least half the buffer, so compaction costs amortized O(1) per byte.

_INT32_SIGN: Final = 0x8000_0000
_MIN_INT32: Final = -0x8000_0000
_MAX_INT32: Final = 0x7FFF_FFFF


# --- Decoding ---


def decode_message(type_id: int, payload: Buffer) -> Message:
    """Decode one message body of type ``type_id``.

    Unknown fields are skipped; custom entries (0xFC00..0xFFFF) come back as CustomEntry.
    Raises ProtocolError for an unknown type id or a malformed body.
    """
    cls = MESSAGE_TYPES.get(type_id)
    if cls is None:
        if is_custom_entry(type_id):
            return CustomEntry(type_id=type_id, payload=bytes(payload))
        raise ProtocolError(f"unknown message type 0x{type_id:04X}")
    kwargs: dict[str, Any] = {}
    try:
        _parse(cls, payload, 0, len(payload), 0, kwargs)
    except ProtocolError as exc:
        raise ProtocolError(f"malformed {cls.__name__} (type 0x{type_id:04X}): {exc}") from None
    return cls(**kwargs)


def _parse(
    cls: type[ProtoStruct],
    buf: Buffer,
    pos: int,
    end: int,
    depth: int,
    kwargs: dict[str, Any],
) -> None:
    """Parse the fields in ``buf[pos:end]`` into ``kwargs`` (which may hold earlier values).

    Later occurrences overwrite scalars, extend repeated fields and merge into
    sub-messages, which is what protobuf specifies for parsing concatenated encodings.
    """
    table = cls._DECODE
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end)
        spec = table.get(key)
        if spec is None:
            pos = _skip_unknown(cls, buf, pos, end, key)
            continue
        name, kind, sub, others = spec

        if kind < KIND_FIRST_LEN:
            if pos < end and buf[pos] < 0x80:
                value = buf[pos]
                pos += 1
            else:
                value, pos = read_varint(buf, pos, end)
            if kind == KIND_UINT32:
                # uint32 fields keep the low 32 bits of a wider varint, like protobuf does.
                kwargs[name] = value & MAX_UINT32
            elif kind == KIND_UINT64:
                kwargs[name] = value
            elif kind == KIND_BOOL:
                kwargs[name] = value != 0
            elif kind == KIND_ENUM:
                value &= MAX_UINT32
                kwargs[name] = value - 0x1_0000_0000 if value & _INT32_SIGN else value
            else:  # one element of a repeated uint32 sent unpacked
                _append(kwargs, name, value & MAX_UINT32)
        else:
            if pos < end and buf[pos] < 0x80:
                length = buf[pos]
                pos += 1
            else:
                length, pos = read_varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise ProtocolError(
                    f"truncated field {cls.__name__}.{name}: it claims {length} bytes "
                    f"but only {end - pos} remain"
                )
            if kind == KIND_STRING:
                kwargs[name] = _utf8(buf, pos, stop, cls, name)
            elif kind == KIND_VALUE:
                previous = kwargs.get(name)
                inner: dict[str, Any] = {} if previous is None else {"content": previous}
                _parse(_Value, buf, pos, stop, depth, inner)
                kwargs[name] = inner.get("content", b"")
            elif kind == KIND_MESSAGE:
                kwargs[name] = _decode_struct(sub, buf, pos, stop, depth, kwargs.get(name))
            elif kind == KIND_BYTES:
                kwargs[name] = bytes(buf[pos:stop])
            elif kind == KIND_REPEATED_MESSAGE:
                _append(kwargs, name, _decode_struct(sub, buf, pos, stop, depth, None))
            elif kind == KIND_VOID:
                # Void has no fields, but its body must still be well-formed protobuf.
                _parse(_Void, buf, pos, stop, depth, {})
                kwargs[name] = True
            elif kind == KIND_STATE_KEYS:
                previous = kwargs.get(name)
                inner = {} if previous is None else {"keys": list(previous)}
                _parse(_StateKeys, buf, pos, stop, depth, inner)
                kwargs[name] = inner.get("keys", [])
            elif kind == KIND_REPEATED_UINT32:
                items = kwargs.get(name)
                if items is None:
                    items = kwargs[name] = []
                while pos < stop:
                    value, pos = read_varint(buf, pos, stop)
                    items.append(value & MAX_UINT32)
            elif kind == KIND_REPEATED_STRING:
                _append(kwargs, name, _utf8(buf, pos, stop, cls, name))
            elif kind == KIND_REPEATED_BYTES:
                _append(kwargs, name, bytes(buf[pos:stop]))
            pos = stop

        if others:
            # Setting one member of a oneof clears the others.
            for other in others:
                kwargs.pop(other, None)


def _append(kwargs: dict[str, Any], name: str, value: Any) -> None:
    items = kwargs.get(name)
    if items is None:
        kwargs[name] = [value]
    else:
        items.append(value)


def _utf8(buf: Buffer, start: int, stop: int, cls: type[ProtoStruct], name: str) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"invalid UTF-8 in string field {cls.__name__}.{name} "
            f"({exc.reason} at byte {exc.start} of {stop - start})"
        ) from None


def _decode_struct(
    cls: type[ProtoStruct] | None,
    buf: Buffer,
    pos: int,
    end: int,
    depth: int,
    existing: ProtoStruct | None,
) -> ProtoStruct:
    assert cls is not None  # every message-kind table row carries its class
    if depth >= _MAX_DEPTH:
        raise ProtocolError(f"{cls.__name__} nested more than {_MAX_DEPTH} levels deep")
    if existing is None:
        kwargs: dict[str, Any] = {}
    else:
        # A second occurrence of a singular sub-message merges into the first.
        kwargs = {
            field: list(value) if isinstance(value, list) else value
            for field in existing.__struct_fields__
            for value in (getattr(existing, field),)
        }
    _parse(cls, buf, pos, end, depth + 1, kwargs)
    return cls(**kwargs)


def _skip_unknown(cls: type[ProtoStruct], buf: Buffer, pos: int, end: int, key: int) -> int:
    number = key >> 3
    wire_type = key & 7
    known = cls._NUMBERS.get(number)
    if known is not None:
        name, expected = known
        raise ProtocolError(
            f"field {cls.__name__}.{name} (number {number}) has wire type {wire_type}, "
            f"expected {expected}"
        )
    if number == 0 or key > MAX_UINT32:
        raise ProtocolError(f"invalid field number {number} in {cls.__name__}")
    return skip_field(buf, pos, end, wire_type)


# --- Encoding ---


def encode_message(msg: ProtoStruct) -> bytes:
    """The protobuf body of ``msg`` (no frame header); nested structs encode too."""
    if isinstance(msg, CustomEntry):
        return bytes(msg.payload)
    out = bytearray()
    _encode_into(msg, out, 0)
    return bytes(out)


def message_type_id(msg: Message) -> int:
    """The frame type id of ``msg`` (a CustomEntry carries its own)."""
    return msg.type_id if isinstance(msg, CustomEntry) else msg.TYPE


def encode_frame(msg: Message, *, requested_ack: bool = False) -> bytes:
    """``msg`` as a whole frame: the 8-byte header, then the body.

    ``requested_ack`` sets REQUESTED_ACK_FLAG, which only ProposeRunCompletionMessage may
    carry.
    """
    flags = 0
    if requested_ack:
        if type(msg) is not ProposeRunCompletionMessage:
            raise ProtocolError(
                f"requested_ack is only allowed on ProposeRunCompletionMessage, "
                f"not on {type(msg).__name__}"
            )
        flags = REQUESTED_ACK_FLAG
    # Reserve the header up front so the frame is assembled in a single buffer.
    out = bytearray(HEADER_SIZE)
    if isinstance(msg, CustomEntry):
        type_id = msg.type_id
        out += msg.payload
    else:
        type_id = msg.TYPE
        _encode_into(msg, out, 0)
    length = len(out) - HEADER_SIZE
    if length > MAX_UINT32:
        raise ProtocolError(f"{type(msg).__name__} is {length} bytes, over the 4 GiB frame limit")
    _HEADER.pack_into(out, 0, type_id, flags, length)
    return bytes(out)


def _encode_into(msg: ProtoStruct, out: bytearray, depth: int) -> None:
    cls = type(msg)
    if depth >= _MAX_DEPTH:
        raise ProtocolError(f"{cls.__name__} nested more than {_MAX_DEPTH} levels deep")
    seen_oneofs: dict[str, str] | None = None
    for name, kind, key, sub, explicit, oneof in cls._ENCODE:
        value = getattr(msg, name)
        if explicit:
            if value is None:
                continue
        elif not value:
            continue  # proto3 leaves default values off the wire
        if oneof is not None:
            if seen_oneofs is None:
                seen_oneofs = {}
            elif oneof in seen_oneofs:
                raise ProtocolError(
                    f"{cls.__name__}: only one field of oneof '{oneof}' may be set, "
                    f"got {seen_oneofs[oneof]} and {name}"
                )
            seen_oneofs[oneof] = name
        try:
            if kind == KIND_STRING:
                write_length_delimited(out, key, value.encode("utf-8"))
            elif kind in (KIND_UINT32, KIND_UINT64):
                if not 0 <= value <= (MAX_UINT32 if kind == KIND_UINT32 else MAX_UINT64):
                    raise _out_of_range(cls, name, value)
                out += key
                write_varint(out, value)
            elif kind == KIND_VALUE:
                out += key
                if value:
                    # Value { bytes content = 1; }: key 0x0A, length, content.
                    size = len(value)
                    write_varint(out, 1 + varint_size(size) + size)
                    out.append(0x0A)
                    write_varint(out, size)
                    out += value
                else:
                    out.append(0)  # present but empty: an empty Value
            elif kind == KIND_MESSAGE:
                write_length_delimited(out, key, _encode_sub(cls, name, sub, value, depth))
            elif kind == KIND_BYTES:
                write_length_delimited(out, key, value)
            elif kind == KIND_BOOL:
                out += key
                out.append(1 if value else 0)
            elif kind == KIND_VOID:
                out += key
                out.append(0)
            elif kind == KIND_REPEATED_MESSAGE:
                for item in value:
                    write_length_delimited(out, key, _encode_sub(cls, name, sub, item, depth))
            elif kind == KIND_REPEATED_UINT32:
                packed = bytearray()
                for item in value:
                    if not 0 <= item <= MAX_UINT32:
                        raise _out_of_range(cls, name, item)
                    write_varint(packed, item)
                write_length_delimited(out, key, packed)
            elif kind == KIND_REPEATED_STRING:
                for item in value:
                    write_length_delimited(out, key, item.encode("utf-8"))
            elif kind == KIND_STATE_KEYS:
                keys = bytearray()
                for item in value:
                    write_length_delimited(keys, b"\x0a", item)
                write_length_delimited(out, key, keys)
            elif kind == KIND_ENUM:
                if not _MIN_INT32 <= value <= _MAX_INT32:
                    raise _out_of_range(cls, name, value)
                out += key
                # Negative int32s go on the wire sign-extended to 64 bits.
                write_varint(out, value & MAX_UINT64)
            elif kind == KIND_REPEATED_BYTES:
                for item in value:
                    write_length_delimited(out, key, item)
        except (TypeError, AttributeError, ValueError) as exc:
            raise ProtocolError(f"cannot encode {cls.__name__}.{name}: {exc}") from None


def _encode_sub(
    owner: type[ProtoStruct],
    name: str,
    expected: type[ProtoStruct] | None,
    value: Any,
    depth: int,
) -> bytearray:
    if type(value) is not expected:
        raise ProtocolError(
            f"cannot encode {owner.__name__}.{name}: expected "
            f"{expected.__name__ if expected else None}, got {type(value).__name__}"
        )
    inner = bytearray()
    _encode_into(value, inner, depth + 1)
    return inner


def _out_of_range(cls: type[ProtoStruct], name: str, value: object) -> ProtocolError:
    return ProtocolError(f"cannot encode {cls.__name__}.{name}: {value!r} is out of range")


# --- Framing ---


class FrameDecoder:
    """Splits a byte stream into frames; feed it chunks as they arrive.

    Bytes live in one immutable buffer read at an offset, so a frame's payload is a single
    slice of it. Chunks that cannot complete the frame being waited for are only collected,
    and joined once it is whole: a large message arriving in many small chunks is copied
    once, not once per chunk.
    """

    __slots__ = ("_buf", "_chunked", "_chunks", "_pos", "_wanted", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buf = b""
        self._pos = 0
        self._chunks: list[bytes] = []
        self._chunked = 0  # bytes in _chunks
        self._wanted = 0  # bytes (from _pos) the next frame needs to be whole; 0 = unknown

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buf) - self._pos + self._chunked

    def feed(self, data: Buffer) -> None:
        """Append received bytes; raises ProtocolError as soon as an oversized header shows."""
        if not data:
            return
        self._chunks.append(bytes(data))
        self._chunked += len(data)
        if len(self._buf) - self._pos + self._chunked < self._wanted:
            return  # the frame waited for is still incomplete: join later, once
        self._join()
        if len(self._buf) >= HEADER_SIZE:
            self._check_length(_HEADER.unpack_from(self._buf, 0)[2])

    def _join(self) -> None:
        chunks = self._chunks
        if self._pos == len(self._buf) and len(chunks) == 1:
            self._buf = chunks[0]
        else:
            self._buf = b"".join([self._buf[self._pos :], *chunks])
        self._pos = 0
        self._chunks = []
        self._chunked = 0

    def next_frame(self) -> tuple[int, int, bytes] | None:
        """The next whole frame as ``(type_id, flags, payload)``, or None until one is buffered."""
        if self._chunks:
            if len(self._buf) - self._pos + self._chunked < self._wanted:
                return None
            self._join()
        buf = self._buf
        pos = self._pos
        start = pos + HEADER_SIZE
        if len(buf) < start:
            self._wanted = HEADER_SIZE
            return None
        type_id, flags, length = _HEADER.unpack_from(buf, pos)
        if length > self.max_message_size:
            self._check_length(length)
        stop = start + length
        if stop > len(buf):
            self._wanted = stop - pos
            return None
        self._pos = stop
        self._wanted = 0
        return type_id, flags, buf[start:stop]

    def decode_messages(self) -> Iterator[tuple[Message, int]]:
        """Decode every whole frame buffered so far, yielding ``(message, flags)``."""
        while (frame := self.next_frame()) is not None:
            type_id, flags, payload = frame
            yield decode_message(type_id, payload), flags

    def close(self) -> None:
        """Declare the stream ended; raises ProtocolError if it stopped inside a frame."""
        if self._chunks:
            self._join()
        buf = self._buf
        pos = self._pos
        # Frames that are whole but undelivered are the caller's business; only a cut
        # frame at the tail means the peer broke off mid-message.
        while True:
            remaining = len(buf) - pos
            if remaining == 0:
                return
            if remaining < HEADER_SIZE:
                raise ProtocolError(
                    "stream ended in the middle of a message: "
                    f"{remaining} of {HEADER_SIZE} header bytes"
                )
            total = HEADER_SIZE + _HEADER.unpack_from(buf, pos)[2]
            if remaining < total:
                raise ProtocolError(
                    f"stream ended in the middle of a message: {remaining} of {total} bytes"
                )
            pos += total

    def _check_length(self, length: int) -> None:
        if length > self.max_message_size:
            raise ProtocolError(
                f"message of {length} bytes exceeds the maximum message size of "
                f"{self.max_message_size} bytes"
            )
