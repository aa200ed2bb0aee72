"""Journal serde for the OpenAI Agents SDK's pydantic values (a ``ModelResponse``, a streamed
``Response``): bytes that decode back into an equal value, so a replay hands the agent loop
exactly what the first run saw."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from framework.exceptions import TerminalError
from framework.serde import Serde

T = TypeVar("T")


class RoundTripSerde(Serde[T], Generic[T]):
    """JSON through a pydantic ``TypeAdapter``, checked to decode back at write time.

    Aliases are written (``async`` rather than ``async_``) and fields never set are left out,
    so the decoded items carry the same set fields and dump into the same model input on the
    next turn. A value that would not decode is refused when it is journaled (a
    TerminalError, as the step is no more journalable on a retry) rather than breaking every
    later replay.
    """

    def __init__(self, value_type: type[T]) -> None:
        self._type_name = getattr(value_type, "__name__", repr(value_type))
        self._adapter: TypeAdapter[T] = TypeAdapter(value_type)

    def serialize(self, obj: T | None) -> bytes:
        if obj is None:
            return b""
        # No serializer warnings: whether the bytes decode is checked right below, and a
        # failure there says what is wrong.
        data = self._adapter.dump_json(obj, by_alias=True, exclude_unset=True, warnings=False)
        try:
            self._adapter.validate_json(data)
        except ValidationError as error:
            raise TerminalError(
                f"the {self._type_name} cannot be journaled: it does not decode back ({error})"
            ) from error
        return data

    def deserialize(self, buf: bytes) -> T | None:
        if not buf:
            return None
        return self._adapter.validate_json(buf)

    def json_schema(self) -> dict[str, Any] | None:
        return self._adapter.json_schema(mode="serialization")
