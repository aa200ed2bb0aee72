"""Services for tests/test_ext_adk.py: Google ADK agents under RestatePlugin, driven by a
scripted offline model.

Every model call and every tool side effect appends a line to the file named by
``EXT_LOG`` (``model <agent> <n>``, ``tool <name> <detail>``, ``awakeable <id>``), so a test
counts them across the service process's restarts. ``EXT_GATE`` names a file that the
``reserve`` tool waits for after its durable step, to hold the run there while the test
kills the process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.apps import App
from google.adk.events import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types

from framework import (
    Context,
    ObjectContext,
    RunOptions,
    Service,
    TerminalError,
    VirtualObject,
    select,
)
from framework import (
    app as make_app,
)
from framework.ext.adk import (
    RestateEventSummarizer,
    RestatePlugin,
    RestateSessionService,
    restate_context,
    restate_object_context,
)

APP_NAME = "adk_tests"


def log(line: str) -> None:
    path = os.environ.get("EXT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


def _side_effect(kind: str, detail: str) -> str:
    log(f"tool {kind} {detail}")
    return f"{kind}-{detail}"


async def _wait_for_gate() -> None:
    gate = os.environ.get("EXT_GATE")
    if not gate:
        return
    while not Path(gate).exists():
        await asyncio.sleep(0.05)


# -- tools -------------------------------------------------------------------------------------


async def reserve(item: str) -> dict[str, str]:
    """Reserve an item in the warehouse."""
    ctx = restate_context()
    reservation = await ctx.run_typed("reserve", _side_effect, RunOptions(), "reserve", item)
    await _wait_for_gate()
    return {"reservation": reservation}


async def charge(amount: int) -> dict[str, str]:
    """Charge the customer."""
    ctx = restate_context()
    receipt = await ctx.run_typed("charge", _side_effect, RunOptions(), "charge", str(amount))
    return {"receipt": receipt}


async def refuse(reason: str) -> dict[str, str]:
    """Refuse the request for good."""
    raise TerminalError(f"refused: {reason}", status_code=422)


async def look_up_order(order_id: str) -> dict[str, str]:
    """Look an order up (there is none: the model gets the error)."""
    raise ValueError(f"no order {order_id}")


async def ask_approval(request: str, timeout_seconds: float) -> dict[str, str]:
    """Ask a human to approve the request; give up after the timeout."""
    ctx = restate_context()
    awakeable_id, decision = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish approval request", log, RunOptions(), f"awakeable {awakeable_id}")
    winner, value = await select(
        decision=decision, timeout=ctx.sleep(timedelta(seconds=timeout_seconds))
    )
    if winner == "decision":
        return {"decision": str(value)}
    return {"decision": "no answer in time"}


# -- the scripted model ---------------------------------------------------------------------

_FIRST_CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "shop": [("reserve", {"item": "apple"}), ("charge", {"amount": 5})],
    "refuser": [("refuse", {"reason": "policy"})],
    "fumbler": [("look_up_order", {"order_id": "42"})],
}


def _function_responses(request: LlmRequest) -> list[types.FunctionResponse]:
    found = []
    for content in request.contents:
        for part in content.parts or []:
            if part.function_response is not None:
                found.append(part.function_response)
    return found


def _user_texts(request: LlmRequest) -> list[str]:
    return [
        part.text
        for content in request.contents
        if content.role == "user"
        for part in content.parts or []
        if part.text
    ]


# Calls per script in this process (agents are built anew at every attempt).
_calls: dict[str, int] = {}


def _text(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


class ScriptedLlm(BaseLlm):
    """Answers from the request alone (so a restarted process answers alike): the script's
    function calls first, then a text built from the tools' answers.

    ``script``: ``shop`` / ``refuser`` / ``fumbler`` (tool calls), ``approver`` (asks a
    human, the timeout comes from the user's message), ``history`` (repeats the user
    messages it was sent),
    ``summary``, ``flaky`` (fails once per process with a retryable error), ``broken``
    (a 400 from the provider).
    """

    model: str = "scripted"
    script: str = "shop"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        _calls[self.script] = calls = _calls.get(self.script, 0) + 1
        log(f"model {self.script} {calls}")
        yield self._answer(llm_request, calls)

    def _answer(self, request: LlmRequest, calls: int) -> LlmResponse:
        answers = _function_responses(request)
        if self.script == "history":
            return _text("seen: " + " | ".join(_user_texts(request)))
        if self.script == "summary":
            return _text("summary of the conversation")
        if self.script == "broken":
            raise _ProviderError("bad request: the prompt is malformed", 400)
        if self.script == "flaky" and calls == 1:
            raise _ProviderError("service unavailable", 503)
        if self.script == "flaky":
            return _text("answered after a retry")
        if self.script == "approver" and not answers:
            timeout = float(_user_texts(request)[-1])
            call = types.FunctionCall(
                name="ask_approval", args={"request": "refund", "timeout_seconds": timeout}
            )
            return LlmResponse(
                content=types.Content(role="model", parts=[types.Part(function_call=call)])
            )
        if not answers:
            parts = [
                types.Part(function_call=types.FunctionCall(name=name, args=args))
                for name, args in _FIRST_CALLS[self.script]
            ]
            return LlmResponse(content=types.Content(role="model", parts=parts))
        summary = ", ".join(
            f"{answer.name}={sorted((answer.response or {}).values())}" for answer in answers
        )
        return _text(f"done: {summary}")


class _ProviderError(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


# -- running an agent ----------------------------------------------------------------------


def _signed(callback_context: CallbackContext, llm_response: LlmResponse) -> LlmResponse | None:
    """An agent's own after-model callback: it still sees the (journaled) response."""
    content = llm_response.content
    if content is None or not content.parts or content.parts[0].text is None:
        return None
    text = content.parts[0].text + " (checked)"
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def agent(script: str, tools: list[Any]) -> LlmAgent:
    return LlmAgent(
        name=f"{script}_agent",
        model=ScriptedLlm(script=script),
        instruction="You are a test agent.",
        tools=tools,
        after_model_callback=_signed if script == "flaky" else None,
    )


def _plugin() -> RestatePlugin:
    # Short retry intervals keep the retry test fast.
    return RestatePlugin(
        run_options=RunOptions(max_attempts=3, initial_retry_interval=timedelta(milliseconds=50))
    )


async def _final_text(runner: Runner, user_id: str, session_id: str, message: str) -> str:
    content = types.Content(role="user", parts=[types.Part(text=message)])
    answer = ""
    async for event in runner.run_async(
        user_id=user_id, session_id=session_id, new_message=content
    ):
        if event.is_final_response() and event.content and event.content.parts:
            answer = "".join(part.text or "" for part in event.content.parts)
    return answer


async def _run_once(script: str, tools: list[Any], message: str) -> str:
    # A session service made per attempt: in-memory state must not outlive the attempt,
    # or a replay would see the events of the attempt before.
    runner = Runner(
        app=App(name=APP_NAME, root_agent=agent(script, tools), plugins=[_plugin()]),
        session_service=InMemorySessionService(),
        auto_create_session=True,
    )
    return await _final_text(runner, "user", "session", message)


agents = Service("AdkAgent")


@agents.handler()
async def shop(ctx: Context, message: str) -> str:
    return await _run_once("shop", [reserve, charge], message)


@agents.handler()
async def refuse_order(ctx: Context, message: str) -> str:
    return await _run_once("refuser", [refuse], message)


@agents.handler()
async def find_order(ctx: Context, message: str) -> str:
    return await _run_once("fumbler", [look_up_order], message)


@agents.handler()
async def approval(ctx: Context, timeout_seconds: float) -> str:
    return await _run_once("approver", [ask_approval], str(timeout_seconds))


@agents.handler()
async def flaky(ctx: Context, message: str) -> str:
    return await _run_once("flaky", [], message)


@agents.handler()
async def broken(ctx: Context, message: str) -> str:
    return await _run_once("broken", [], message)


@agents.handler()
async def summarize(ctx: Context, texts: list[str]) -> str:
    summarizer = RestateEventSummarizer.from_llm(ScriptedLlm(script="summary"), max_retries=1)
    events = [
        Event(
            author="user",
            invocation_id="conversation",
            content=types.Content(role="user", parts=[types.Part(text=text)]),
        )
        for text in texts
    ]
    summary = await summarizer.maybe_summarize_events(events=events)
    if summary is None or summary.actions.compaction is None:
        return "no summary"
    compacted = summary.actions.compaction.compacted_content
    return "".join(part.text or "" for part in (compacted.parts or []) if compacted)


# -- a conversation per object key -------------------------------------------------------------

chats = VirtualObject("AdkChat")
_sessions = RestateSessionService()


def _chat_runner() -> Runner:
    return Runner(
        app=App(name=APP_NAME, root_agent=agent("history", []), plugins=[_plugin()]),
        session_service=_sessions,
        auto_create_session=True,
    )


@chats.handler()
async def chat(ctx: ObjectContext, message: str) -> str:
    return await _final_text(_chat_runner(), "user", ctx.key(), message)


@chats.handler()
async def chat_and_describe(ctx: ObjectContext, message: str) -> dict[str, Any]:
    """The answer, and the session's events as this attempt sees them (after a full replay,
    what it recomputed rather than what the server stored)."""
    answer = await _final_text(_chat_runner(), "user", ctx.key(), message)
    session = await _sessions.get_session(app_name=APP_NAME, user_id="user", session_id=ctx.key())
    assert session is not None
    return {
        "answer": answer,
        "events": [{"id": e.id, "timestamp": e.timestamp} for e in session.events],
    }


@chats.handler()
async def forget(ctx: ObjectContext) -> dict[str, Any]:
    key = restate_object_context().key()
    listed = await _sessions.list_sessions(app_name=APP_NAME, user_id="user")
    had = await _sessions.has_session(key)
    await _sessions.delete_session(app_name=APP_NAME, user_id="user", session_id=key)
    return {
        "had": had,
        "listed": [session.id for session in listed.sessions],
        "has": await _sessions.has_session(key),
    }


app = make_app([agents, chats])
