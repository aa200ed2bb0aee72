"""Serialization of handler inputs, outputs, state and step results (JSON by default).

``DefaultSerde`` picks the codec from a type hint, decoding what the official SDK decodes
into the same Python values:

- no hint, ``Any``, ``TypedDict`` and every hint not listed below: plain JSON, no
  validation (a ``TypedDict`` arrives as the dict the client sent, absent keys absent);
- ``bytes``: passed through untouched;
- Pydantic v2 models (also inside ``list[...]``, ``Optional[...]``...): through Pydantic;
- msgspec Structs: through msgspec, validated;
- dataclasses (also ``Optional``, inside lists and dict values): built from the JSON object,
  absent ``Optional`` fields becoming None and defaults applied (dacite's rules), type-checked;
- JSON builtins (``str``, ``int``, ``float``, ``bool``, ``Literal``, and lists, dicts and
  unions of them): validated, so ``"abc"`` for an ``int`` is a clear 400.

``MsgspecJsonSerde(hint)`` validates any hint msgspec can type (TypedDicts with their
required keys, enums, datetimes...), for whoever wants strict decoding. Typed serdes also
describe their type as a JSON Schema, which the discovery manifest hands to the Restate
server (its UI and OpenAPI show it).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import sys
import types
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

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the values, if this serde knows one."""
        return None


class BytesSerde(Serde[bytes]):
    """Raw bytes, passed through untouched."""

    def deserialize(self, buf: bytes) -> bytes | None:
        return buf

    def serialize(self, obj: bytes | None) -> bytes:
        return b"" if obj is None else bytes(obj)


def _encode_other(obj: Any) -> Any:
    # A Pydantic model returned where no type hint said so: encode it the Pydantic way.
    dump = getattr(obj, "model_dump", None)
    if dump is not None and _pydantic_base_model() is not None:
        return dump(mode="json")
    raise TypeError(
        f"cannot serialize a {type(obj).__name__} as JSON: return JSON-friendly values, "
        "msgspec Structs, dataclasses or Pydantic models, or pass a serde"
    )


_json_encoder = msgspec.json.Encoder(enc_hook=_encode_other)
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
        return b"" if obj is None else _json_encoder.encode(obj)

    def json_schema(self) -> dict[str, Any] | None:
        return msgspec.json.schema(self.model)


class PydanticJsonSerde(Serde[I]):
    """JSON through Pydantic v2: a model class, or any hint containing models
    (``list[Model]``, ``Model | None``...). Needs ``pip install 'framework[pydantic]'``."""

    def __init__(self, model: Any) -> None:
        try:
            from pydantic import TypeAdapter
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "PydanticJsonSerde needs Pydantic v2: pip install 'framework[pydantic]'"
            ) from error
        self.model = model
        self._adapter: Any = TypeAdapter(model)

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return self._adapter.validate_json(buf)  # type: ignore[no-any-return]

    def serialize(self, obj: I | None) -> bytes:
        return b"" if obj is None else bytes(self._adapter.dump_json(obj))

    def json_schema(self) -> dict[str, Any] | None:
        return self._adapter.json_schema(mode="serialization")  # type: ignore[no-any-return]


def return_hint(fn: Any) -> Any:
    """The return annotation of ``fn`` (None when it has none or it cannot be resolved)."""
    annotations = getattr(fn, "__annotations__", None)
    if not annotations or "return" not in annotations:
        return None  # lambdas and unannotated functions: no lookup at all
    return _resolved_return_hint(fn)


@functools.lru_cache(maxsize=1024)
def _resolved_return_hint(fn: Any) -> Any:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:
        return None
    return None if hint is type(None) else hint


class DefaultSerde(Serde[I]):
    """What a handler gets unless it asks otherwise: picked from the type hint (see the
    module docstring)."""

    def __init__(self, type_hint: type[I] | None = None) -> None:
        self.type_hint = type_hint
        self._inner: Serde[Any] = serde_for_type(type_hint)

    def with_maybe_type(self, type_hint: type[I] | None = None) -> DefaultSerde[I]:
        return DefaultSerde(type_hint) if type_hint is not None else self

    def deserialize(self, buf: bytes) -> I | None:
        return self._inner.deserialize(buf)

    def serialize(self, obj: I | None) -> bytes:
        return self._inner.serialize(obj)

    def json_schema(self) -> dict[str, Any] | None:
        return self._inner.json_schema()


_bytes_serde = BytesSerde()
_json_serde: JsonSerde[Any] = JsonSerde()


def serde_for_type(type_hint: Any) -> Serde[Any]:
    """The serde ``DefaultSerde`` uses for ``type_hint`` (built once per hint)."""
    try:
        return _cached_serde_for_type(type_hint)
    except TypeError:  # an unhashable hint
        return _serde_for_type(type_hint)


@functools.lru_cache(maxsize=1024)
def _cached_serde_for_type(type_hint: Any) -> Serde[Any]:
    return _serde_for_type(type_hint)


def _serde_for_type(type_hint: Any) -> Serde[Any]:
    if type_hint is None or type_hint is Any or type_hint is typing.Any:
        return _json_serde
    if type_hint is bytes:
        return _bytes_serde
    if _mentions_pydantic_model(type_hint):
        return PydanticJsonSerde(type_hint)
    shape = _shape(type_hint)
    if shape == "struct" or shape == "builtin":
        return MsgspecJsonSerde(type_hint)
    if shape == "dataclass":
        return DataclassJsonSerde(type_hint)
    return _LooseJsonSerde(type_hint)


_Shape = typing.Literal["builtin", "struct", "dataclass", "loose"]
_BUILTINS = (str, int, float, bool, type(None))
_CONTAINERS = (list, dict, typing.Union, types.UnionType)


def _shape(hint: Any) -> _Shape:
    """How a hint decodes: validated as JSON builtins, by msgspec as a Struct, as a
    dataclass, or loosely as plain JSON (see the module docstring)."""
    if hint in _BUILTINS or hint is Any:  # (a bare Any never gets here: plain JSON)
        return "builtin"
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return "struct"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return "dataclass"
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        scalars = all(isinstance(value, _BUILTINS) for value in typing.get_args(hint))
        return "builtin" if scalars else "loose"
    if origin not in _CONTAINERS:
        return "loose"
    args = typing.get_args(hint)
    if origin is dict and args and args[0] is not str:
        return "loose"  # JSON keys are strings: leave other key types to the handler
    inner = [_shape(arg) for arg in (args[1:] if origin is dict else args)]
    if not inner or "loose" in inner:
        return "loose"
    for shape in ("struct", "dataclass"):
        if shape in inner:
            # One kind of typed value per hint; a mix of Structs and dataclasses is rare
            # enough to decode loosely.
            others = {s for s in inner if s not in ("builtin", shape)}
            return shape if not others else "loose"
    return "builtin"


class _LooseJsonSerde(JsonSerde[I]):
    """Plain JSON for a hint the official SDK does not validate (TypedDict, enum...):
    the decoded value is what the client sent; the hint only describes the schema."""

    def __init__(self, type_hint: Any) -> None:
        self.type_hint = type_hint

    def json_schema(self) -> dict[str, Any] | None:
        # Nothing is enforced, so no key is required (clients leave Optional ones out).
        return _relaxed_schema(self.type_hint, drop_all=True)


class DataclassJsonSerde(Serde[I]):
    """JSON objects built into dataclasses the way ``dacite.from_dict`` builds them: absent
    ``Optional`` fields become None, absent fields with defaults take them, extra keys are
    ignored, and values are type-checked. The hint may be ``Optional``, a list or a dict of
    dataclasses."""

    def __init__(self, type_hint: Any) -> None:
        self.type_hint = type_hint

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        import dacite  # only dataclass hints need it

        data = _json_decoder.decode(buf)
        hint = self.type_hint
        if isinstance(hint, type):  # one dataclass: the common case
            if not isinstance(data, dict):
                raise ValueError(
                    f"expected a JSON object for {hint.__name__}, got {type(data).__name__}"
                )
            return dacite.from_dict(hint, data)
        # from_dict builds one dataclass: wrap any other shape (Optional, list, dict of
        # dataclasses) in a throwaway one with a single field.
        try:
            holder = dacite.from_dict(_holder_for(hint), {"value": data})
            return holder.value  # type: ignore[no-any-return]
        except dacite.DaciteFieldError as error:
            path = error.field_path or ""
            error.field_path = path.removeprefix("value").removeprefix(".") or None
            raise

    def serialize(self, obj: I | None) -> bytes:
        return b"" if obj is None else _json_encoder.encode(obj)

    def json_schema(self) -> dict[str, Any] | None:
        # An absent field that may be null becomes None: it is not required.
        return _relaxed_schema(self.type_hint, drop_all=False)


def _relaxed_schema(type_hint: Any, *, drop_all: bool) -> dict[str, Any] | None:
    """msgspec's schema of ``type_hint``, its ``required`` lists cut down to what the loose
    decoders really need: nothing (``drop_all``), or the properties that cannot be null."""
    try:
        schema = msgspec.json.schema(type_hint)
    except Exception:  # a hint msgspec cannot describe: no schema
        return None
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        required = node.get("required")
        if isinstance(required, list):
            properties = node.get("properties", {})
            kept = [] if drop_all else [k for k in required if not _nullable(properties.get(k))]
            if kept:
                node["required"] = kept
            else:
                del node["required"]
        pending.extend(node.values())
    return schema


def _nullable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return any(isinstance(o, dict) and o.get("type") == "null" for o in options)


@functools.lru_cache(maxsize=256)
def _holder_for(type_hint: Any) -> Any:
    return dataclasses.make_dataclass("value", [("value", type_hint)])


def describe_decode_error(error: Exception) -> str:
    """One line naming what did not decode and where (the field), for a 400 answer."""
    errors = getattr(error, "errors", None)
    if callable(errors):  # Pydantic: a list of {loc, msg}
        try:
            problems = [
                f"{'.'.join(str(part) for part in item['loc']) or 'input'}: {item['msg']}"
                for item in errors()
            ]
        except Exception:
            problems = []
        if problems:
            return "; ".join(problems)
    if isinstance(error, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    return str(error) or type(error).__name__


def is_pydantic(annotation: Any) -> bool:
    """Whether ``annotation`` is a Pydantic model class (False when Pydantic is not loaded)."""
    base_model = _pydantic_base_model()
    return (
        isinstance(annotation, type)
        and base_model is not None
        and issubclass(annotation, base_model)
    )


def DaciteFromDict(data_class: Any, data: Any) -> Any:
    """``data`` (a dict from JSON) built into ``data_class`` by dacite's rules."""
    import dacite

    return dacite.from_dict(data_class, data)


def DaciteToDict(obj: Any) -> dict[Any, Any]:
    """A dataclass instance as a dict (``dataclasses.asdict``)."""
    return dataclasses.asdict(obj)


def _mentions_pydantic_model(type_hint: Any) -> bool:
    base_model = _pydantic_base_model()
    if base_model is None:
        return False
    pending = [type_hint]
    while pending:
        hint = pending.pop()
        if isinstance(hint, type) and issubclass(hint, base_model):
            return True
        pending.extend(typing.get_args(hint))
    return False


def _pydantic_base_model() -> type | None:
    # A hint can only name a Pydantic model if Pydantic is imported already: never import
    # it here (it is slow to import and an optional dependency).
    pydantic = sys.modules.get("pydantic")
    return getattr(pydantic, "BaseModel", None) if pydantic is not None else None


__all__ = [
    "BytesSerde",
    "DaciteFromDict",
    "DaciteToDict",
    "DataclassJsonSerde",
    "DefaultSerde",
    "JsonSerde",
    "MsgspecJsonSerde",
    "PydanticJsonSerde",
    "Serde",
    "describe_decode_error",
    "is_pydantic",
    "return_hint",
    "serde_for_type",
]
