"""A durable support agent (pydantic-ai): one conversation per customer, kept in a virtual
object's state; its model calls and tool calls are journaled, so a crash or a redeploy in
the middle of a turn neither asks the model twice nor refunds twice.

Run it: ``pip install -e '.[pydantic-ai]'`` then ``python -m framework run
services.agent:app`` and ``curl -X POST localhost:8080/SupportDesk/ann/ask -H
'content-type: application/json' -d '"Where is order 42?"'``.

With ``OPENAI_API_KEY`` set it asks OpenAI (``SUPPORT_MODEL``, default ``openai:gpt-4o-mini``;
pip install 'pydantic-ai-slim[openai]'); without, a scripted model stands in, so the example
runs offline.
"""

from __future__ import annotations

import os
import re

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from framework import ObjectContext, ObjectSharedContext, VirtualObject
from framework import app as make_app
from framework.ext.pydantic import PydanticTypeAdapter, RestateAgent

ORDERS = {"42": "shipped on Monday", "7": "delivered, but damaged"}
REFUNDS: list[str] = []  # what a payment provider would see


def _scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """An offline stand-in for a model: look the order up, refund it if it arrived damaged."""
    last = messages[-1]
    returned = [p for p in last.parts if isinstance(p, ToolReturnPart)]
    if returned:
        outcome = str(returned[-1].content)
        if returned[-1].tool_name == "order_status" and "damaged" in outcome:
            order = str(returned[-1].tool_call_id).removeprefix("status-")
            return ModelResponse(
                parts=[ToolCallPart("refund", {"order": order}, tool_call_id=f"refund-{order}")]
            )
        return ModelResponse(parts=[TextPart(f"Done: {outcome}.")])
    prompt = (
        next((p.content for p in last.parts if isinstance(p, UserPromptPart)), "")
        if isinstance(last, ModelRequest)
        else ""
    )
    match = re.search(r"\d+", str(prompt))
    if match is None:
        return ModelResponse(parts=[TextPart("Which order number is it about?")])
    order = match.group()
    return ModelResponse(
        parts=[ToolCallPart("order_status", {"order": order}, tool_call_id=f"status-{order}")]
    )


def _model() -> Model | str:
    if os.environ.get("OPENAI_API_KEY"):
        return os.environ.get("SUPPORT_MODEL", "openai:gpt-4o-mini")
    return FunctionModel(_scripted)


support = Agent(
    _model(),
    instructions="You help customers with their orders. Refund damaged deliveries.",
)


@support.tool_plain
def order_status(order: str) -> str:
    """Where an order is."""
    return ORDERS.get(order, "unknown")


@support.tool_plain
def refund(order: str) -> str:
    """Refund an order (money moves: it must happen once)."""
    REFUNDS.append(order)
    return f"refunded order {order}"


durable_support = RestateAgent(support)
desk = VirtualObject("SupportDesk")
HISTORY = PydanticTypeAdapter(ModelMessagesTypeAdapter)


@desk.handler()
async def ask(ctx: ObjectContext, question: str) -> str:
    """One turn of the customer's conversation (the object key is the customer)."""
    history = await ctx.get("history", serde=HISTORY) or []
    result = await durable_support.run(question, message_history=history)
    ctx.set("history", result.all_messages(), serde=HISTORY)
    answer: str = result.output
    return answer


@desk.handler(kind="shared")
async def turns(ctx: ObjectSharedContext) -> int:
    """How many messages the conversation holds."""
    history: list[ModelMessage] = await ctx.get("history", serde=HISTORY) or []
    return len(history)


app = make_app([desk])
