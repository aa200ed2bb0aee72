"""Serialization of handler inputs, outputs, state and step results (JSON by default)."""

from __future__ import annotations

import abc
import typing
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the official SDK's name


class Serde(Generic[T], abc.ABC):
    """Turns values into bytes for the journal and back."""

    @abc.abstractmethod
    def deserialize(self, buf: bytes) -> T | None: ...

    @abc.abstractmethod
    def serialize(self, obj: T | None) -> bytes: ...


class BytesSerde(Serde[bytes]):
    """Raw bytes, passed through untouched."""

    def deserialize(self, buf: bytes) -> bytes | None:
        return buf

    def serialize(self, obj: bytes | None) -> bytes:
        return b"" if obj is None else bytes(obj)


_json_encoder = msgspec.json.Encoder()
_json_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


class JsonSerde(Serde[I]):
    """JSON without a target type: dicts, lists, strings, numbers, booleans, null."""

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return _json_decoder.decode(buf)  # type: ignore[no-any-return]

    def serialize(self, obj: I | None) -> bytes:
        # None is "no value", as in the official SDK: an empty body, not ``null``.
        return b"" if obj is None else _json_encoder.encode(obj)


class MsgspecJsonSerde(Serde[I]):
    """JSON decoded into a given type (msgspec Struct, dataclass, TypedDict, builtins...)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(model)

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return self._decoder.decode(buf)  # type: ignore[no-any-return]

    def serialize(self, obj: I | None) -> bytes:
        # None is "no value", as in the official SDK: an empty body, not ``null``.
        return b"" if obj is None else _json_encoder.encode(obj)


class DefaultSerde(Serde[I]):
    """What a handler gets unless it asks otherwise: picked from the type hint.

    ``bytes`` passes through, any other hint (msgspec Structs, dataclasses, builtins) is
    JSON decoded into that type, and no hint means plain JSON.
    """

    def __init__(self, type_hint: type[I] | None = None) -> None:
        self.type_hint = type_hint
        self._inner: Serde[Any] = _serde_for(type_hint)

    def with_maybe_type(self, type_hint: type[I] | None = None) -> DefaultSerde[I]:
        return DefaultSerde(type_hint) if type_hint is not None else self

    def deserialize(self, buf: bytes) -> I | None:
        return self._inner.deserialize(buf)

    def serialize(self, obj: I | None) -> bytes:
        return self._inner.serialize(obj)


_bytes_serde = BytesSerde()
_json_serde: JsonSerde[Any] = JsonSerde()


def _serde_for(type_hint: Any) -> Serde[Any]:
    if type_hint is None or type_hint is Any or type_hint is typing.Any:
        return _json_serde
    if type_hint is bytes:
        return _bytes_serde
    try:
        return MsgspecJsonSerde(type_hint)
    except TypeError:
        # A hint msgspec cannot target (e.g. a plain class): fall back to untyped JSON.
        return _json_serde


__all__ = ["BytesSerde", "DefaultSerde", "JsonSerde", "MsgspecJsonSerde", "Serde"]
