"""How model responses and tool results are written to the journal and read back: as
langchain-core's message dicts inside a small JSON envelope, so a replay rebuilds the very
same messages (ids, tool calls, usage and metadata included)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any, Union

from langchain.agents.middleware import ModelResponse
from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict
from langgraph.types import Command, Send
from pydantic import BaseModel, TypeAdapter

from framework.exceptions import TerminalError
from framework.serde import Serde

__all__ = ["JournalEncodingError", "ModelResponseSerde", "ToolResult", "ToolResultSerde"]

ToolResult = Any
"""What a tool call returns through the tool node: a ToolMessage, a Command, or a list of them."""

_VERSION = 1


class JournalEncodingError(TerminalError):
    """A result that cannot be journaled faithfully. Raised inside the step, so it is recorded
    as the step's failure instead of being retried: encoding it again would fail again."""


def _dumps(payload: dict[str, Any], what: str) -> bytes:
    try:
        return json.dumps(
            payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as error:
        raise JournalEncodingError(f"{what} cannot be journaled as JSON: {error}") from error


def _loads(buf: bytes, what: str) -> dict[str, Any]:
    payload = json.loads(buf)
    if not isinstance(payload, dict) or payload.get("v") != _VERSION:
        raise TerminalError(f"the journaled {what} is not in a format this version reads")
    return payload


def _messages_out(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    return messages_to_dict(list(messages))


def _messages_in(data: list[dict[str, Any]]) -> list[BaseMessage]:
    return messages_from_dict(data)


# -- structured output -----------------------------------------------------------------------


def _schema_types(response_format: Any) -> Iterator[type]:
    """The classes a structured response of this agent can be an instance of."""
    schema = getattr(response_format, "schema", response_format)
    pending = [schema]
    while pending:
        candidate = pending.pop()
        origin = typing.get_origin(candidate)
        if origin is Union or origin is types.UnionType:
            pending.extend(typing.get_args(candidate))
        elif isinstance(candidate, type):
            yield candidate


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _structured_out(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return {"type": _type_name(type(value)), "data": value.model_dump(mode="json")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = TypeAdapter(type(value)).dump_python(value, mode="json")
        return {"type": _type_name(type(value)), "data": data}
    # TypedDict and JSON-schema responses are plain JSON already.
    return {"type": None, "data": value}


def _structured_in(encoded: dict[str, Any] | None, response_format: Any) -> Any:
    if encoded is None:
        return None
    name = encoded["type"]
    if name is None:
        return encoded["data"]
    for cls in _schema_types(response_format):
        if _type_name(cls) == name:
            return TypeAdapter(cls).validate_python(encoded["data"])
    raise TerminalError(
        f"the journaled structured response is a {name}, which this agent's response_format "
        "no longer names: the agent's code changed under a running invocation"
    )


class ModelResponseSerde(Serde[ModelResponse[Any]]):
    """A ``ModelResponse``: its messages and, if the agent asked for one, the structured
    response (rebuilt into the response_format's class on the way back)."""

    def __init__(self, response_format: Any = None) -> None:
        self._response_format = response_format

    def serialize(self, obj: ModelResponse[Any] | None) -> bytes:
        if obj is None:
            raise JournalEncodingError("the model call returned no response")
        payload = {
            "v": _VERSION,
            "messages": _messages_out(obj.result),
            "structured": _structured_out(obj.structured_response),
        }
        return _dumps(payload, "the model's response")

    def deserialize(self, buf: bytes) -> ModelResponse[Any] | None:
        payload = _loads(buf, "model response")
        return ModelResponse(
            result=_messages_in(payload["messages"]),
            structured_response=_structured_in(payload["structured"], self._response_format),
        )


# -- tool results ----------------------------------------------------------------------------


def _state_value_out(value: Any) -> dict[str, Any]:
    # Message lists are what tools put in state updates; everything else must be JSON.
    if isinstance(value, BaseMessage):
        return {"message": _messages_out([value])[0]}
    if isinstance(value, list | tuple) and value and all(isinstance(v, BaseMessage) for v in value):
        return {"messages": _messages_out(value)}
    return {"json": value}


def _state_value_in(encoded: dict[str, Any]) -> Any:
    if "message" in encoded:
        return _messages_in([encoded["message"]])[0]
    if "messages" in encoded:
        return _messages_in(encoded["messages"])
    return encoded["json"]


def _command_out(command: Command[Any]) -> dict[str, Any]:
    update = command.update
    pairs: list[tuple[str, Any]]
    if update is None:
        pairs, shape = [], "none"
    elif isinstance(update, dict):
        pairs, shape = list(update.items()), "dict"
    elif isinstance(update, list | tuple) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in update
    ):
        pairs, shape = list(update), "pairs"
    else:
        raise JournalEncodingError(
            f"a tool's Command update of type {type(update).__name__} cannot be journaled: "
            "use a dict of state keys"
        )
    goto = command.goto
    gotos: list[Any] = [goto] if isinstance(goto, str | Send) else list(goto)
    if not all(isinstance(node, str) for node in gotos):
        raise JournalEncodingError(
            "a tool's Command with Send in goto cannot be journaled: go to nodes by name"
        )
    return {
        "graph": command.graph,
        "update_shape": shape,
        "update": [[key, _state_value_out(value)] for key, value in pairs],
        "resume": command.resume,
        "goto": goto if isinstance(goto, str) else gotos,
    }


def _command_in(data: dict[str, Any]) -> Command[Any]:
    pairs = [(key, _state_value_in(value)) for key, value in data["update"]]
    update: Any = None
    if data["update_shape"] == "dict":
        update = dict(pairs)
    elif data["update_shape"] == "pairs":
        update = pairs
    return Command(graph=data["graph"], update=update, resume=data["resume"], goto=data["goto"])


def _result_out(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseMessage):
        return {"message": _messages_out([result])[0]}
    if isinstance(result, Command):
        return {"command": _command_out(result)}
    if isinstance(result, list):
        return {"list": [_result_out(item) for item in result]}
    raise JournalEncodingError(
        f"a tool call returned a {type(result).__name__}; only ToolMessage and Command results "
        "can be journaled"
    )


def _result_in(data: dict[str, Any]) -> Any:
    if "message" in data:
        return _messages_in([data["message"]])[0]
    if "command" in data:
        return _command_in(data["command"])
    return [_result_in(item) for item in data["list"]]


class ToolResultSerde(Serde[ToolResult]):
    """What a tool call gave the agent: a ToolMessage, a Command (its state update's messages
    as message dicts, the rest as JSON), or a list of those."""

    def serialize(self, obj: ToolResult | None) -> bytes:
        return _dumps({"v": _VERSION, "result": _result_out(obj)}, "the tool's result")

    def deserialize(self, buf: bytes) -> ToolResult | None:
        return _result_in(_loads(buf, "tool result")["result"])
