"""``RestateMiddleware``: the agent middleware that makes each model call and each tool call
of a LangChain agent a durable step of the Restate handler running the agent."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from framework import BytesSerde, Context, RestateDurableFuture, RunOptions, TerminalError
from framework.ext._common import restate_context
from framework.ext.langchain._failures import DEFAULT_RUN_OPTIONS, cannot_succeed
from framework.ext.langchain._journal import ModelResponseSerde, ToolResultSerde
from framework.ext.langchain._order import turn_order

__all__ = ["MODEL_STEP", "STEP_FLAG", "RestateMiddleware"]

MODEL_STEP = "model call"
"""The name of every model call's step in the journal."""

STEP_FLAG = "restate_step"
"""Tool metadata key: ``False`` runs the tool in the handler itself instead of in a step, for
tools that use the Restate context (awakeables, sleeps, steps of their own)."""

_SYNC_REFUSAL = (
    "RestateMiddleware journals model and tool calls through the running Restate handler, "
    "which is async: run the agent with `await agent.ainvoke(...)` (or `astream`), not "
    "`invoke`/`stream`"
)

ToolHandler = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]
ModelHandler = Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]


class RestateMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Journals a ``create_agent`` agent's model and tool calls in the Restate handler that
    runs it, so a retried or resumed invocation replays them instead of repeating them.

    Every model call is a step named ``"model call"`` whose result (the AIMessage with its
    id and tool calls, and any structured response) comes back from the journal on replay.
    Every tool call is a step named after the tool; the tool calls of one model turn reach
    the journal in the model's order, although they run concurrently. A ``TerminalError``
    from a tool fails the agent run rather than becoming an error message for the model.

    ``run_options`` sets the retry policy of those steps (its serde and type hint are not
    used: the middleware journals messages its own way); without it a step is tried five
    times. A model error that no retry can fix (a 4xx answer other than 408, 409, 425 and
    429, a missing capability) fails the run at once with a TerminalError.

    A tool whose metadata has ``restate_step: False`` runs outside any step and may use
    ``restate_context()``: its own steps, awakeables and timers are what is journaled.

    Give it first in ``middleware=[...]``: its steps then enclose the other middleware's
    model and tool handling, and every tool call of a turn reaches it (an outer middleware
    answering a call by itself would keep the turn's later calls waiting for their turn).
    Run the agent with ``ainvoke``/``astream`` inside a handler, one agent run at a time.
    """

    def __init__(self, run_options: RunOptions[Any] | None = None) -> None:
        super().__init__()
        self._run_options = run_options if run_options is not None else DEFAULT_RUN_OPTIONS

    def _step_options(self) -> RunOptions[bytes]:
        return dataclasses.replace(self._run_options, serde=BytesSerde(), type_hint=None)

    # -- model calls ---------------------------------------------------------------------------

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: ModelHandler,
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Call the model (through ``handler``) as one durable step."""
        ctx = restate_context()
        serde = ModelResponseSerde(request.response_format)

        async def call_model() -> bytes:
            try:
                response = await handler(request)
            except TerminalError:
                raise
            except Exception as error:
                if cannot_succeed(error):
                    raise TerminalError(
                        f"the model call failed and would fail again: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                raise
            # Encoded in the step, so a response that cannot be journaled fails it for good
            # instead of calling the model again.
            return serde.serialize(response)

        journaled = await ctx.run_typed(MODEL_STEP, call_model, self._step_options())
        response = serde.deserialize(journaled)
        if response is None:
            raise TerminalError("the journal holds no model response for this step")
        return response

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Refused: a synchronous run cannot journal; use ``ainvoke``."""
        raise TerminalError(_SYNC_REFUSAL)

    # -- tool calls ----------------------------------------------------------------------------

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: ToolHandler,
    ) -> ToolMessage | Command[Any]:
        """Run the tool call (through ``handler``) as a durable step named after the tool,
        in the model's order among the calls of its turn."""
        ctx = restate_context()
        if request.tool is None:
            # No such tool: the tool node answers with an error message for the model,
            # the same on every run, and nothing happens that needs journaling.
            return await handler(request)
        in_step = (request.tool.metadata or {}).get(STEP_FLAG, True) is not False
        order = turn_order(ctx, request)
        if order is None:
            if in_step:
                return await self._finish(self._start_step(ctx, request, handler))
            return await handler(request)

        turn, call_id = order
        turnstile = turn.turnstile
        try:
            await turnstile.wait_for(call_id)
            if in_step:
                # The step is journaled when it starts: the next call may start its own
                # as soon as this one is in, and both run at the same time.
                try:
                    future = self._start_step(ctx, request, handler)
                except Exception:
                    turnstile.cancel_all_after(call_id)
                    raise
                turnstile.allow_next_after(call_id)
                return await self._finish(future)
            # A tool journaling its own steps keeps the turn until it is done, so that
            # its steps and its siblings' do not interleave differently on a replay.
            try:
                result = await handler(request)
            except Exception:
                turnstile.cancel_all_after(call_id)
                raise
            turnstile.allow_next_after(call_id)
            return result
        finally:
            turn.done(call_id)

    def _start_step(
        self, ctx: Context, request: ToolCallRequest, handler: ToolHandler
    ) -> RestateDurableFuture[bytes]:
        serde = ToolResultSerde()

        async def call_tool() -> bytes:
            try:
                result = await handler(request)
            except GraphInterrupt as interrupt:
                # Retrying would interrupt again, forever: there is no checkpointer to
                # resume from. Waiting for a person is an awakeable's job.
                raise TerminalError(
                    f"tool {request.tool_call['name']!r} called LangGraph's interrupt(), "
                    "which a durable step cannot resume from: wait for the answer on "
                    "restate_context().awakeable() in a tool with "
                    f"metadata={{{STEP_FLAG!r}: False}}"
                ) from interrupt
            except GraphBubbleUp as signal:
                raise TerminalError(
                    f"tool {request.tool_call['name']!r} raised LangGraph's "
                    f"{type(signal).__name__}, which cannot cross a durable step: return a "
                    "Command from the tool instead"
                ) from signal
            return serde.serialize(result)

        name = request.tool.name if request.tool is not None else request.tool_call["name"]
        return ctx.run_typed(name, call_tool, self._step_options())

    @staticmethod
    async def _finish(future: RestateDurableFuture[bytes]) -> ToolMessage | Command[Any]:
        journaled = await future
        result: ToolMessage | Command[Any] | None = ToolResultSerde().deserialize(journaled)
        if result is None:
            raise TerminalError("the journal holds no tool result for this step")
        return result

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Refused: a synchronous run cannot journal; use ``ainvoke``."""
        raise TerminalError(_SYNC_REFUSAL)
