"""Protobuf wire-format primitives: varints, field keys, length-delimited values, skipping.

Decoders take ``(buf, pos, end)`` and return the new position, so callers walk one
buffer without slicing it; every read is bounds-checked against ``end``.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from framework._protocol.errors import ProtocolError

__all__ = [
    "MAX_UINT32",
    "MAX_UINT64",
    "WIRE_END_GROUP",
    "WIRE_FIXED32",
    "WIRE_FIXED64",
    "WIRE_LEN",
    "WIRE_START_GROUP",
    "WIRE_VARINT",
    "Buffer",
    "field_key",
    "read_length_delimited",
    "read_varint",
    "skip_field",
    "varint_size",
    "write_key",
    "write_length_delimited",
    "write_varint",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

WIRE_VARINT: Final = 0
WIRE_FIXED64: Final = 1
WIRE_LEN: Final = 2
WIRE_START_GROUP: Final = 3
WIRE_END_GROUP: Final = 4
WIRE_FIXED32: Final = 5

MAX_UINT32: Final = 0xFFFF_FFFF
MAX_UINT64: Final = 0xFFFF_FFFF_FFFF_FFFF

# A uint64 needs at most 10 groups of 7 bits; anything longer is garbage, not a number.
_MAX_VARINT_BYTES: Final = 10
_MAX_FIELD_NUMBER: Final = (1 << 29) - 1


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``pos``; returns ``(value, new_pos)``.

    Bits beyond 64 are dropped, as protobuf parsers do.
    """
    result = 0
    shift = 0
    limit = pos + _MAX_VARINT_BYTES
    while pos < end:
        if pos == limit:
            raise ProtocolError("malformed varint: longer than 10 bytes")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & MAX_UINT64, pos
        shift += 7
    raise ProtocolError("truncated varint: the data ended before its last byte")


def read_length_delimited(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a length prefix at ``pos``; returns ``(start, stop)`` of the bytes it covers."""
    if pos < end and buf[pos] < 0x80:
        length = buf[pos]
        pos += 1
    else:
        length, pos = read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise ProtocolError(
            f"truncated length-delimited field: it claims {length} bytes "
            f"but only {end - pos} remain"
        )
    return pos, stop


def skip_field(buf: Buffer, pos: int, end: int, wire_type: int) -> int:
    """Skip the value of an unknown field whose key has been read; returns the new position."""
    if wire_type == WIRE_VARINT:
        return read_varint(buf, pos, end)[1]
    if wire_type == WIRE_LEN:
        return read_length_delimited(buf, pos, end)[1]
    if wire_type == WIRE_FIXED64:
        size = 8
    elif wire_type == WIRE_FIXED32:
        size = 4
    elif wire_type in (WIRE_START_GROUP, WIRE_END_GROUP):
        raise ProtocolError("protobuf groups (wire types 3 and 4) are not supported")
    else:
        raise ProtocolError(f"invalid protobuf wire type {wire_type}")
    if pos + size > end:
        raise ProtocolError(
            f"truncated fixed{size * 8} field: needs {size} bytes but only {end - pos} remain"
        )
    return pos + size


def varint_size(value: int) -> int:
    """How many bytes ``write_varint`` emits for ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


def write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (0 <= value < 2**64) as a varint."""
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def field_key(number: int, wire_type: int) -> bytes:
    """The encoded key of a field, computed once per field rather than per message."""
    if not 1 <= number <= _MAX_FIELD_NUMBER:
        raise ValueError(f"invalid protobuf field number {number}")
    out = bytearray()
    write_varint(out, (number << 3) | wire_type)
    return bytes(out)


def write_key(out: bytearray, number: int, wire_type: int) -> None:
    """Append the key of field ``number`` with ``wire_type``."""
    write_varint(out, (number << 3) | wire_type)


def write_length_delimited(out: bytearray, key: bytes, data: Buffer) -> None:
    """Append a length-delimited field: its pre-encoded ``key``, the length, the bytes."""
    out += key
    write_varint(out, len(data))
    out += data
