"""How this integration's values reach the journal: Pydantic TypeAdapter serdes for a
user's types, for model responses and for the outcome of a tool call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar, overload

from pydantic import ConfigDict, TypeAdapter
from pydantic_ai.exceptions import ApprovalRequired, CallDeferred, ModelRetry, ToolFailed
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    ToolReturn,
    ToolReturnContent,
)

from framework.serde import Serde

T = TypeVar("T")


class PydanticTypeAdapter(Serde[T], Generic[T]):
    """A serde for any type Pydantic can validate, as JSON bytes.

    ``model_type`` is the type (a model, a dataclass, ``list[Model]``...) or a ready
    ``TypeAdapter``, e.g. pydantic-ai's ``ModelMessagesTypeAdapter`` for a message history,
    which keeps its own settings (binary content as base64).
    """

    @overload
    def __init__(self, model_type: type[T]) -> None: ...
    @overload
    def __init__(self, model_type: TypeAdapter[T]) -> None: ...
    @overload
    def __init__(self: PydanticTypeAdapter[Any], model_type: Any) -> None: ...
    def __init__(self, model_type: Any) -> None:
        self.model_type = model_type
        self._adapter: TypeAdapter[T] = (
            model_type if isinstance(model_type, TypeAdapter) else TypeAdapter(model_type)
        )

    def serialize(self, obj: T | None) -> bytes:
        # b"" is the journal's "no value", as with the framework's own serdes.
        return b"" if obj is None else self._adapter.dump_json(obj)

    def deserialize(self, buf: bytes) -> T | None:
        return None if not buf else self._adapter.validate_json(buf)

    def json_schema(self) -> dict[str, Any] | None:
        return self._adapter.json_schema(mode="serialization")


class ModelResponseSerde(Serde[ModelResponse]):
    """One ModelResponse, through pydantic-ai's own message adapter, so what replays is the
    response the model gave: same parts, tool-call ids, timestamps, usage, binary parts."""

    def serialize(self, obj: ModelResponse | None) -> bytes:
        return b"" if obj is None else ModelMessagesTypeAdapter.dump_json([obj])

    def deserialize(self, buf: bytes) -> ModelResponse | None:
        if not buf:
            return None
        (message,) = ModelMessagesTypeAdapter.validate_json(buf)
        if not isinstance(message, ModelResponse):
            raise TypeError(f"the journal holds a {type(message).__name__}, not a ModelResponse")
        return message


def message_history_serde() -> PydanticTypeAdapter[list[ModelMessage]]:
    """A serde for a conversation's messages (e.g. kept in VirtualObject state)."""
    return PydanticTypeAdapter(ModelMessagesTypeAdapter)


OutcomeKind = Literal["value", "tool_return", "retry", "failed", "deferred", "approval"]


@dataclass
class ToolOutcome:
    """What one tool call ended with, as the journal keeps it.

    pydantic-ai steers the run with exceptions a tool raises (ask the model to retry, report a
    failure to it, defer the call). They are answers, not failures of the step: the step
    records them, and every replay raises them again where the tool call was.
    """

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        ser_json_bytes="base64", val_json_bytes="base64"
    )

    kind: OutcomeKind
    value: ToolReturnContent = None
    tool_return: ToolReturn[Any] | None = None
    message: str | None = None
    metadata: dict[str, Any] | None = None
    deferred_kind: Literal["external", "question"] = "external"

    @classmethod
    def of_result(cls, result: Any) -> ToolOutcome:
        if isinstance(result, ToolReturn):
            return cls(kind="tool_return", tool_return=result)
        return cls(kind="value", value=result)

    @classmethod
    def of_signal(cls, signal: Exception) -> ToolOutcome | None:
        """The outcome for one of pydantic-ai's control-flow exceptions, else None."""
        if isinstance(signal, ModelRetry):
            return cls(kind="retry", message=signal.message)
        if isinstance(signal, ToolFailed):
            return cls(kind="failed", message=signal.message)
        if isinstance(signal, CallDeferred):
            return cls(kind="deferred", metadata=signal.metadata, deferred_kind=signal.kind)
        if isinstance(signal, ApprovalRequired):
            return cls(kind="approval", metadata=signal.metadata)
        return None

    def unwrap(self) -> Any:
        """The tool's result, or the exception it raised, raised again."""
        if self.kind == "value":
            return self.value
        if self.kind == "tool_return":
            return self.tool_return
        if self.kind == "retry":
            raise ModelRetry(self.message or "")
        if self.kind == "failed":
            raise ToolFailed(self.message or "")
        if self.kind == "deferred":
            raise CallDeferred(self.metadata, kind=self.deferred_kind)
        raise ApprovalRequired(self.metadata)


TOOL_OUTCOME_SERDE: PydanticTypeAdapter[ToolOutcome] = PydanticTypeAdapter(ToolOutcome)
MODEL_RESPONSE_SERDE = ModelResponseSerde()
