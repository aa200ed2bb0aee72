"""The model's order for the tool calls of one model turn: the agent runs them concurrently,
and their durable steps must reach the journal in the same order on every run.

One ``Turnstile`` per model turn and attempt, found from any of the turn's tool calls (the
agent's state holds the AIMessage that asked for them). It is kept in the attempt's extension
data, so a retried attempt starts with fresh turnstiles and nothing outlives the attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest

from framework import Context
from framework.ext.turnstile import Turnstile
from framework.server_context import get_extension_data, set_extension_data

__all__ = ["TurnOrder", "turn_order"]

_KEY = "framework.ext.langchain.turns"


class TurnOrder:
    """A turnstile over one turn's tool calls, forgotten once every call has passed it (so a
    later turn that reuses the same ids, as scripted models do, gets a fresh one)."""

    __slots__ = ("_key", "_left", "_turns", "turnstile")

    def __init__(self, turns: dict[tuple[str, ...], TurnOrder], key: tuple[str, ...]) -> None:
        self._turns = turns
        self._key = key
        self._left = set(key[1:])
        self.turnstile = Turnstile(key[1:])

    def done(self, call_id: str) -> None:
        self._left.discard(call_id)
        if not self._left and self._turns.get(self._key) is self:
            del self._turns[self._key]


def _messages_of(state: Any) -> Sequence[Any]:
    if isinstance(state, dict):
        messages = state.get("messages", ())
    elif isinstance(state, list):
        messages = state
    else:
        messages = getattr(state, "messages", ())
    return messages if isinstance(messages, Sequence) else ()


def _ordered_call_ids(request: ToolCallRequest, call_id: str) -> tuple[str, ...] | None:
    """The AIMessage id and the ids of its tool calls that reach the tool node (registered
    tools without an answer yet), in the model's order; None if this call is not among them."""
    messages = _messages_of(request.state)
    registered = {tool.name for tool in getattr(request.runtime, "tools", None) or ()}
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if not isinstance(message, AIMessage):
            continue
        if not any(call.get("id") == call_id for call in message.tool_calls):
            continue
        answered = {
            later.tool_call_id
            for later in messages[position + 1 :]
            if isinstance(later, ToolMessage)
        }
        ids = [
            call.get("id")
            for call in message.tool_calls
            if call["name"] in registered and call.get("id") not in answered
        ]
        if call_id not in ids or None in ids or len(set(ids)) != len(ids):
            return None
        return (_message_key(message, position), *[i for i in ids if i is not None])
    return None


def _message_key(message: BaseMessage, position: int) -> str:
    # The message id tells turns apart; a model without ids still has a position in history.
    return message.id if message.id else f"#{position}"


def turn_order(ctx: Context, request: ToolCallRequest) -> tuple[TurnOrder, str] | None:
    """This call's turn order and its id, or None when it cannot be ordered (no id, not
    found in the state): such a call runs without waiting for its siblings."""
    call_id = request.tool_call.get("id")
    if not call_id:
        return None
    key = _ordered_call_ids(request, call_id)
    if key is None or len(key) < 3:
        return None  # alone in its turn: nothing to order
    turns: dict[tuple[str, ...], TurnOrder] | None = get_extension_data(ctx, _KEY)
    if turns is None:
        turns = {}
        set_extension_data(ctx, _KEY, turns)
    order = turns.get(key)
    if order is None:
        order = turns[key] = TurnOrder(turns, key)
    return order, call_id
