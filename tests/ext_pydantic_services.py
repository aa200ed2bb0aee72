"""Services for tests/test_ext_pydantic.py: pydantic-ai agents on scripted offline models
(FunctionModel, TestModel), run durably by framework.ext.pydantic.

Every model call and every tool side effect appends a line to the file named by ``EXT_LOG``
(``model <agent> <n>``, ``tool <name> <args>``, ``event <kind>``...), so a test counts them
across retries, replays and restarts of the service process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.messages import (
    AgentStreamEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from framework import (
    Context,
    ObjectContext,
    Service,
    TerminalError,
    VirtualObject,
    select,
)
from framework import (
    app as make_app,
)
from framework.ext.pydantic import RestateAgent, restate_context, restate_object_context
from framework.ext.pydantic._serde import message_history_serde


def log(line: str) -> None:
    path = os.environ.get("EXT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


def _responses(messages: list[ModelMessage]) -> int:
    return sum(isinstance(message, ModelResponse) for message in messages)


def _prompt(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    raise AssertionError("no user prompt")


def _tool_returns(messages: list[ModelMessage], outcome: str = "success") -> dict[str, object]:
    return {
        part.tool_name: part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart) and part.outcome == outcome
    }


# --- two tools, asked for together; the second can be held on a gate file -----------------


@dataclass
class TripDeps:
    gate: str | None = None


def trip_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _responses(messages) + 1
    city = _prompt(messages)
    log(f"model trip {turn} {city}")
    if turn == 1:
        return ModelResponse(
            parts=[
                ToolCallPart("get_weather", {"city": city}),
                ToolCallPart("book_umbrella", {"city": city}),
            ]
        )
    returns = _tool_returns(messages)
    return ModelResponse(parts=[TextPart(f"{returns['get_weather']}; {returns['book_umbrella']}")])


trip_agent = Agent(FunctionModel(trip_model), deps_type=TripDeps, name="trip")


@trip_agent.tool_plain
def get_weather(city: str) -> str:
    log(f"tool get_weather {city}")
    return f"rain in {city}"


@trip_agent.tool
def book_umbrella(ctx: RunContext[TripDeps], city: str) -> str:
    gate = ctx.deps.gate
    if gate is not None:
        # Blocks inside its durable step, before its side effect, so a test can kill the
        # process here: the weather step is journaled by then, this one is not.
        log("waiting book_umbrella")
        deadline = time.monotonic() + 60
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the gate never opened")
            time.sleep(0.05)
    log(f"tool book_umbrella {city}")
    return f"umbrella booked in {city}"


durable_trip = RestateAgent(trip_agent)


class TripRequest(BaseModel):
    city: str
    gate: str | None = None


# --- a tool that fails for good -------------------------------------------------------------


def charge_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _responses(messages) + 1
    log(f"model charge {turn}")
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("charge_card", {"cents": 1250})])
    return ModelResponse(parts=[TextPart("charged")])


charge_agent = Agent(FunctionModel(charge_model), name="charge")


@charge_agent.tool_plain
def charge_card(cents: int) -> str:
    log(f"tool charge_card {cents}")
    raise TerminalError(f"card declined for {cents} cents", status_code=402)


durable_charge = RestateAgent(charge_agent)


# --- a tool that asks the model to try again ------------------------------------------------


def lookup_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _responses(messages) + 1
    log(f"model lookup {turn}")
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("lookup", {"code": "abc"})])
    if turn == 2:
        hint = _tool_returns(messages, outcome="retried")["lookup"]
        return ModelResponse(parts=[ToolCallPart("lookup", {"code": "ABC", "hint": hint})])
    return ModelResponse(parts=[TextPart(f"found {_tool_returns(messages)['lookup']}")])


lookup_agent = Agent(FunctionModel(lookup_model), name="lookup")


@lookup_agent.tool_plain(retries=2)
def lookup(code: str, hint: str = "") -> str:
    log(f"tool lookup {code} {hint}".rstrip())
    if code != code.upper():
        raise ModelRetry("codes are upper case")
    return f"item {code}"


durable_lookup = RestateAgent(lookup_agent)


# --- two tools called together that journal steps of their own ----------------------------


def order_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _responses(messages) + 1
    log(f"model order {turn}")
    if turn == 1:
        return ModelResponse(
            parts=[
                ToolCallPart("slow_lookup", {"key": "a"}),
                ToolCallPart("fast_lookup", {"key": "b"}),
            ]
        )
    returns = _tool_returns(messages)
    return ModelResponse(parts=[TextPart(f"{returns['slow_lookup']} {returns['fast_lookup']}")])


order_agent = Agent(FunctionModel(order_model), name="order")


@order_agent.tool_plain
async def slow_lookup(key: str) -> str:
    # Were the two calls run concurrently, this one's step would be journaled second.
    await asyncio.sleep(0.3)
    return await restate_context().run_typed("slow step", lambda: f"slow-{key}")


@order_agent.tool_plain
async def fast_lookup(key: str) -> str:
    return await restate_context().run_typed("fast step", lambda: f"fast-{key}")


# Tools that use the Restate context themselves: not wrapped in a step of their own.
durable_order = RestateAgent(order_agent, auto_wrap_tools=False)


# --- human in the loop: a tool waits on an awakeable, with a timeout -----------------------


@dataclass
class ApprovalDeps:
    timeout_s: float


def approval_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = _responses(messages) + 1
    log(f"model approval {turn}")
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("ask_human", {"question": _prompt(messages)})])
    return ModelResponse(parts=[TextPart(f"human: {_tool_returns(messages)['ask_human']}")])


approval_agent = Agent(FunctionModel(approval_model), deps_type=ApprovalDeps, name="approval")


@approval_agent.tool
async def ask_human(ctx: RunContext[ApprovalDeps], question: str) -> str:
    restate = restate_context()
    awakeable_id, answer = restate.awakeable(type_hint=str)
    await restate.run_typed("publish question", lambda: log(f"awakeable {awakeable_id}"))
    match await select(answer=answer, timeout=restate.sleep(timedelta(seconds=ctx.deps.timeout_s))):
        case ["answer", text]:
            return f"answered {text}"
        case _:
            return "no answer in time"


durable_approval = RestateAgent(approval_agent, auto_wrap_tools=False)


class ApprovalRequest(BaseModel):
    question: str
    timeout_s: float


# --- a session: the conversation lives in the virtual object's state ------------------------


def session_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    prompts = [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart) and isinstance(part.content, str)
    ]
    log(f"model session {len(prompts)}")
    return ModelResponse(parts=[TextPart(f"turn {len(prompts)}: {' | '.join(prompts)}")])


durable_session = RestateAgent(Agent(FunctionModel(session_model), name="session"))
HISTORY = "history"
HISTORY_SERDE = message_history_serde()


# --- streaming: TestModel streams; events go to a handler -----------------------------------


async def log_events(ctx: RunContext[Any], events: AsyncIterable[AgentStreamEvent]) -> None:
    async for event in events:
        log(f"event {event.event_kind}")


stream_agent = Agent(TestModel(), name="stream")


@stream_agent.tool_plain
def add_numbers(a: int, b: int) -> int:
    log(f"tool add_numbers {a} {b}")
    return a + b


durable_stream = RestateAgent(stream_agent, event_stream_handler=log_events)
durable_stream_text = RestateAgent(stream_agent)


# --- the services -------------------------------------------------------------------------

agents = Service("PydanticAgents")


@agents.handler()
async def trip(ctx: Context, request: TripRequest) -> str:
    result = await durable_trip.run(request.city, deps=TripDeps(gate=request.gate))
    return str(result.output)


@agents.handler()
async def walk(ctx: Context, city: str) -> list[str]:
    async with durable_trip.iter(city, deps=TripDeps()) as run:
        nodes = [type(node).__name__ async for node in run]
    assert run.result is not None
    return [*nodes, str(run.result.output)]


@agents.handler()
async def charge(ctx: Context, customer: str) -> str:
    result = await durable_charge.run(f"charge {customer}")
    return str(result.output)


@agents.handler()
async def find(ctx: Context, what: str) -> str:
    result = await durable_lookup.run(what)
    return str(result.output)


@agents.handler()
async def ordered(ctx: Context, what: str) -> str:
    result = await durable_order.run(what)
    return str(result.output)


@agents.handler()
async def approve(ctx: Context, request: ApprovalRequest) -> str:
    result = await durable_approval.run(request.question, deps=ApprovalDeps(request.timeout_s))
    return str(result.output)


@agents.handler()
async def events(ctx: Context, prompt: str) -> str:
    result = await durable_stream.run(prompt)
    return str(result.output)


@agents.handler()
async def streamed(ctx: Context, prompt: str) -> list[str]:
    async with durable_stream_text.run_stream(prompt) as result:
        chunks = [chunk async for chunk in result.stream_output(debounce_by=None)]
    return [str(chunk) for chunk in chunks]


session = VirtualObject("PydanticSession")


@session.handler()
async def chat(ctx: ObjectContext, message: str) -> str:
    state = restate_object_context()
    history = await state.get(HISTORY, serde=HISTORY_SERDE) or []
    result = await durable_session.run(message, message_history=history)
    state.set(HISTORY, result.all_messages(), serde=HISTORY_SERDE)
    return str(result.output)


app = make_app([agents, session])
