"""LangChain agents behind Restate handlers, for tests/test_ext_langchain.py.

The models are langchain-core's ``GenericFakeChatModel`` taught to follow a script: the
reply to a conversation is chosen by how many AIMessages follow its last HumanMessage, so a
restarted process answers a replayed conversation exactly as the first one did. Every model
call and every tool side effect appends a line to the file named by ``EXT_LOG`` (the tests
count them across restarts); ``EXT_LOG``'s directory also holds the ``release`` file the
blocking tool waits for.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.structured_output import ToolStrategy
from langchain.tools import ToolRuntime
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool, tool
from pydantic import BaseModel, Field

import framework
from framework import Context, ObjectContext, RunOptions, Service, TerminalError, VirtualObject
from framework.ext.langchain import RestateMiddleware, restate_context

LOG_ENV = "EXT_LOG"


def log(*words: object) -> None:
    """One line per call or side effect in ``$EXT_LOG`` (nothing when it is unset)."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as file:
            file.write(" ".join(str(word) for word in words) + "\n")


def release_file() -> Path:
    return Path(os.environ[LOG_ENV]).with_name("release")


# -- scripted models ---------------------------------------------------------------------------

Reply = AIMessage | Callable[[Sequence[BaseMessage]], AIMessage]


def turn_of(messages: Sequence[BaseMessage]) -> int:
    """How many times the model already answered since the user last spoke."""
    turn = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        turn += isinstance(message, AIMessage)
    return turn


class ProviderError(Exception):
    """What a provider SDK raises: an exception carrying the HTTP status of the answer."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ScriptedChatModel(GenericFakeChatModel):
    """A fake chat model whose reply depends on the conversation, not on a shared iterator.

    With ``fail_first`` set, the first call of each invocation raises a ``ProviderError``
    whose status is the user's message (the retry of the step then gets the reply).
    """

    label: str
    replies: list[Any]  # Reply; pydantic would try to read a callable as an AIMessage
    fail_first: bool = False
    failed: set[str] = Field(default_factory=set)
    messages: Any = Field(default_factory=lambda: iter(()))

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self  # the script already knows the tools' names

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = turn_of(messages)
        if self.fail_first:
            invocation = restate_context().request().id
            if invocation not in self.failed:
                self.failed.add(invocation)
                status = int(str(messages[-1].content))
                log("model", self.label, turn, "error", status)
                raise ProviderError(f"provider answered {status}", status)
        log("model", self.label, turn)
        if turn >= len(self.replies):
            raise AssertionError(f"the {self.label} script has no reply for turn {turn}")
        reply = self.replies[turn]
        message = reply(messages) if callable(reply) else reply.model_copy(deep=True)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def last_tool_answers(messages: Sequence[BaseMessage]) -> str:
    answers = []
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        answers.append(str(message.content))
    return "; ".join(reversed(answers))


def summary(messages: Sequence[BaseMessage]) -> AIMessage:
    return AIMessage(content=f"done: {last_tool_answers(messages)}")


def ai_message_ids(messages: Sequence[BaseMessage]) -> list[str | None]:
    return [message.id for message in messages if isinstance(message, AIMessage)]


def last_ai_id(state: Any) -> str | None:
    return ai_message_ids(state["messages"])[-1]


# -- tools ------------------------------------------------------------------------------------


@tool
async def get_weather(city: str) -> str:
    """The weather in a city."""
    log("tool get_weather", city)
    return f"sunny in {city}"


@tool
def record_visit(city: str, runtime: ToolRuntime) -> str:
    """Write down that the user plans to visit a city."""
    log("tool record_visit", city, last_ai_id(runtime.state))
    return f"visit to {city} recorded"


@tool
async def first_errand(task: str) -> str:
    """Do the first half of a task."""
    log("tool first_errand", task)
    return f"first half of {task} done"


@tool
async def second_errand(task: str, runtime: ToolRuntime) -> str:
    """Do the second half of a task, once allowed to."""
    log("started second_errand", task, last_ai_id(runtime.state))
    release = release_file()
    for _ in range(1200):
        if release.exists():
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("never released")
    log("tool second_errand", task)
    return f"second half of {task} done"


@tool
async def refuse(what: str) -> str:
    """Try something that is not allowed."""
    log("tool refuse", what)
    raise TerminalError(f"refused: {what}", status_code=403)


def _publish_question(awakeable_id: str, question: str) -> None:
    log("awakeable", awakeable_id, question)


async def _ask_human(question: str, timeout_s: float) -> str:
    ctx = restate_context()
    awakeable_id, answer = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish question", lambda: _publish_question(awakeable_id, question))
    winner, value = await framework.select(
        answer=answer, timeout=ctx.sleep(timedelta(seconds=timeout_s))
    )
    return f"human said: {value}" if winner == "answer" else "no answer in time"


ask_human = StructuredTool.from_function(
    coroutine=_ask_human,
    name="ask_human",
    description="Ask a person and wait for the answer, at most timeout_s seconds.",
    # It waits on an awakeable: it runs in the handler, not inside a step.
    metadata={"restate_step": False},
)


# -- agents -----------------------------------------------------------------------------------


class HoldBackWeather(AgentMiddleware[AgentState[Any], Any, Any]):
    """Makes get_weather reach the Restate middleware after record_visit, so that the journal
    shows whether the model's order (get_weather first) is kept anyway."""

    async def awrap_tool_call(self, request: Any, handler: Any) -> Any:
        if request.tool_call["name"] == "get_weather":
            await asyncio.sleep(0.3)
        return await handler(request)


def _plan_trip(messages: Sequence[BaseMessage]) -> AIMessage:
    city = str(messages[-1].content)
    return AIMessage(
        content="",
        tool_calls=[
            call("get_weather", "call_weather", city=city),
            call("record_visit", "call_visit", city=city),
        ],
    )


travel_model = ScriptedChatModel(label="travel", replies=[_plan_trip, summary])
travel_agent = create_agent(
    travel_model,
    [get_weather, record_visit],
    middleware=[HoldBackWeather(), RestateMiddleware()],
)

errands_model = ScriptedChatModel(
    label="errands",
    replies=[
        lambda messages: AIMessage(
            content="", tool_calls=[call("first_errand", "call_1", task=messages[-1].content)]
        ),
        lambda messages: AIMessage(
            content="",
            tool_calls=[call("second_errand", "call_2", task=messages[-3].content)],
        ),
        summary,
    ],
)
errands_agent = create_agent(
    errands_model, [first_errand, second_errand], middleware=[RestateMiddleware()]
)

forbidden_model = ScriptedChatModel(
    label="forbidden",
    replies=[
        lambda messages: AIMessage(
            content="", tool_calls=[call("refuse", "call_r", what=messages[-1].content)]
        ),
        summary,
    ],
)
forbidden_agent = create_agent(forbidden_model, [refuse], middleware=[RestateMiddleware()])


def _ask(messages: Sequence[BaseMessage]) -> AIMessage:
    asked = json.loads(str(messages[-1].content))
    return AIMessage(content="", tool_calls=[call("ask_human", "call_ask", **asked)])


approval_model = ScriptedChatModel(label="approval", replies=[_ask, summary])
approval_agent = create_agent(approval_model, [ask_human], middleware=[RestateMiddleware()])

FAST_RETRIES: RunOptions[Any] = RunOptions(
    max_attempts=3, initial_retry_interval=timedelta(milliseconds=50)
)


def _answer(messages: Sequence[BaseMessage]) -> AIMessage:
    return AIMessage(content=f"answer to {messages[-1].content}")


flaky_model = ScriptedChatModel(label="flaky", replies=[_answer], fail_first=True)
flaky_agent = create_agent(flaky_model, [], middleware=[RestateMiddleware(FAST_RETRIES)])


class Forecast(BaseModel):
    city: str
    sky: str


forecast_model = ScriptedChatModel(
    label="forecast",
    replies=[
        lambda messages: AIMessage(
            content="",
            tool_calls=[call("Forecast", "call_f", city=messages[-1].content, sky="clear")],
        )
    ],
)
forecast_agent = create_agent(
    forecast_model, [], response_format=ToolStrategy(Forecast), middleware=[RestateMiddleware()]
)


def _session_reply(messages: Sequence[BaseMessage]) -> AIMessage:
    said = [str(m.content) for m in messages if isinstance(m, HumanMessage)]
    earlier = ", ".join(said[:-1]) or "nothing"
    return AIMessage(content=f"you said {said[-1]}; before that: {earlier}")


session_model = ScriptedChatModel(label="session", replies=[_session_reply])
session_agent = create_agent(session_model, [], middleware=[RestateMiddleware()])


# -- services ---------------------------------------------------------------------------------

agents = Service("LangchainAgent")


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    messages = result["messages"]
    return {"answer": messages[-1].content, "ai_ids": ai_message_ids(messages)}


@agents.handler()
async def travel(ctx: Context, city: str) -> dict[str, Any]:
    return _outcome(await travel_agent.ainvoke({"messages": [HumanMessage(city)]}))


@agents.handler()
async def errands(ctx: Context, task: str) -> dict[str, Any]:
    return _outcome(await errands_agent.ainvoke({"messages": [HumanMessage(task)]}))


@agents.handler()
async def forbidden(ctx: Context, what: str) -> dict[str, Any]:
    return _outcome(await forbidden_agent.ainvoke({"messages": [HumanMessage(what)]}))


@agents.handler()
async def approval(ctx: Context, ask: dict[str, Any]) -> dict[str, Any]:
    prompt = HumanMessage(json.dumps(ask))
    return _outcome(await approval_agent.ainvoke({"messages": [prompt]}))


@agents.handler()
async def flaky(ctx: Context, status: int) -> dict[str, Any]:
    return _outcome(await flaky_agent.ainvoke({"messages": [HumanMessage(str(status))]}))


@agents.handler()
async def forecast(ctx: Context, city: str) -> dict[str, Any]:
    result = await forecast_agent.ainvoke({"messages": [HumanMessage(city)]})
    structured = result["structured_response"]
    return {"type": type(structured).__name__, **structured.model_dump()}


sessions = VirtualObject("LangchainSession")


@sessions.handler()
async def chat(ctx: ObjectContext, message: str) -> dict[str, Any]:
    """One turn of a conversation kept in this object's state, one conversation per key."""
    history: list[Any] = messages_from_dict(await ctx.get("messages", type_hint=list) or [])
    result = await session_agent.ainvoke({"messages": [*history, HumanMessage(message)]})
    ctx.set("messages", messages_to_dict(result["messages"]))
    return {"reply": result["messages"][-1].content, "kept": len(result["messages"])}


app = framework.app([agents, sessions])
