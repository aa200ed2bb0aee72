"""The serde for ADK's pydantic models (LlmResponse, Event, ...) in the journal and in state:
compact JSON without unset fields, bytes as base64, and an empty value for None."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

from framework.serde import Serde

M = TypeVar("M", bound=BaseModel)


class ModelSerde(Serde[M], Generic[M]):
    """Round-trips one pydantic model class (or None)."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def serialize(self, obj: M | None) -> bytes:
        if obj is None:
            return b""
        return obj.model_dump_json(exclude_none=True).encode()

    def deserialize(self, buf: bytes) -> M | None:
        if not buf:
            return None
        return self.model.model_validate_json(buf)
