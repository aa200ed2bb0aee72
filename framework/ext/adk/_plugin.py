"""RestatePlugin: the ADK plugin that makes an agent's run durable.

- Model requests: ``before_model_callback`` asks the agent's model itself, inside one
  ``ctx.run`` step, and hands ADK the journaled response, so ADK never calls the model on
  its own and a replay reads the answer from the journal. The after-model callbacks of the
  other plugins and of the agent still run on that response, as they would have.
- Tools run where ADK runs them, in the handler, so a tool can reach the Restate context
  (``restate_context()``) and make its side effects durable steps, wait on awakeables and
  timers, or call other services. Concurrent function calls of one model response take
  turns in the model's order, so their steps reach the journal in the same order on every
  attempt.
- Failures: a TerminalError fails the run; ADK wraps anything a plugin callback raises in
  a RuntimeError (which Restate would retry forever), so a failed model step is re-raised
  from a stand-in tool call, where ADK lets errors through as they are. SDK-internal
  unwinding and cancellation pass through untouched; other tool errors become an error
  result for the model to read.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from dataclasses import dataclass
from typing import Any

from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext
from google.adk.agents.readonly_context import ReadonlyContext
from google.adk.flows.llm_flows.functions import AF_FUNCTION_CALL_ID_PREFIX
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from framework import RunOptions
from framework.exceptions import RetryableError, TerminalError, is_internal_exception
from framework.ext._common import restate_context
from framework.ext.adk._determinism import AttemptClock, make_deterministic
from framework.ext.adk._model_step import ModelTurn, request_model, step_options
from framework.ext.turnstile import Turnstile

logger = logging.getLogger(__name__)

FAILURE_TOOL_NAME = "restate_terminal_error"


@dataclass(frozen=True)
class _ToolBatch:
    """The function calls of one model response and the tools the request offered."""

    turnstile: Turnstile
    ids: frozenset[str]
    known_tools: frozenset[str]


# Set in the flow's task at each model step; the tasks ADK starts for the tool calls of
# that step copy it, so each call finds its batch without any per-invocation registry.
_current_batch: contextvars.ContextVar[_ToolBatch | None] = contextvars.ContextVar(
    "framework_ext_adk_tool_batch", default=None
)


class _TerminalErrorTool(BaseTool):
    """Raises a durable step's TerminalError from where ADK re-raises tool errors as they
    are (out of a plugin callback it would arrive wrapped in a RuntimeError)."""

    def __init__(self, error: TerminalError) -> None:
        super().__init__(
            name=FAILURE_TOOL_NAME, description="Ends the run with a durable step's failure."
        )
        self._error = error

    async def run_async(self, *, args: dict[str, Any], tool_context: ToolContext) -> Any:
        raise self._error


def _fail_run(llm_request: LlmRequest, error: TerminalError) -> LlmResponse:
    llm_request.tools_dict[FAILURE_TOOL_NAME] = _TerminalErrorTool(error)
    call = types.FunctionCall(
        id=f"{AF_FUNCTION_CALL_ID_PREFIX}{FAILURE_TOOL_NAME}", name=FAILURE_TOOL_NAME, args={}
    )
    return LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))


def is_failure_event_content(content: types.Content | None) -> bool:
    """Whether ``content`` is the stand-in call that carries a step failure (no history)."""
    parts = (content.parts or []) if content else []
    return any(
        p.function_call is not None and p.function_call.name == FAILURE_TOOL_NAME for p in parts
    )


async def _model_of(invocation: InvocationContext) -> BaseLlm:
    agent: Any = invocation.agent
    resolve = getattr(agent, "canonical_model_async", None)
    llm = (
        await resolve(ReadonlyContext(invocation)) if resolve is not None else agent.canonical_model
    )
    if not isinstance(llm, BaseLlm):
        raise TypeError(f"the agent {getattr(agent, 'name', agent)!r} has no model (BaseLlm)")
    return llm


async def _after_model(callback_context: CallbackContext, response: LlmResponse) -> LlmResponse:
    """The after-model callbacks ADK skips when a before-model callback answers: the other
    plugins' first, then the agent's; the first that returns a response replaces it."""
    invocation = callback_context.get_invocation_context()
    altered = await invocation.plugin_manager.run_after_model_callback(
        callback_context=callback_context, llm_response=response
    )
    if altered:
        return altered
    for callback in getattr(invocation.agent, "canonical_after_model_callbacks", ()):
        result = callback(callback_context=callback_context, llm_response=response)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, LlmResponse):
            return result
    return response


def _batch_of(
    response: LlmResponse, clock: AttemptClock, tools: frozenset[str]
) -> _ToolBatch | None:
    ids: list[str] = []
    for part in (response.content.parts or []) if response.content else []:
        call = part.function_call
        if call is None:
            continue
        if not call.id:
            # A call an after-model callback added: name it deterministically here, as
            # ADK would (through the same provider) after this callback returns.
            call.id = f"{AF_FUNCTION_CALL_ID_PREFIX}{clock.new_id()}"
        if call.id not in ids:
            ids.append(call.id)
    if not ids:
        return None
    return _ToolBatch(Turnstile(ids), frozenset(ids), tools)


class RestatePlugin(BasePlugin):
    """Makes the runs of every agent of a ``Runner``/``App`` durable under Restate.

    ``run_options`` sets the retry policy of each model request (``RunOptions``: attempts,
    durations, intervals; its serde is ignored, model responses have their own); by default
    6 attempts with exponential backoff from 1 s to 30 s, then the run fails for good.
    """

    def __init__(self, run_options: RunOptions[Any] | None = None) -> None:
        super().__init__(name="restate")
        self._step_options: RunOptions[ModelTurn] = step_options(run_options)

    # -- the run and its agents --------------------------------------------------------------

    async def before_run_callback(
        self, *, invocation_context: InvocationContext
    ) -> types.Content | None:
        # Before the runner starts the agent's task, so that task inherits the providers.
        await make_deterministic(restate_context())
        return None

    async def before_agent_callback(
        self, *, agent: BaseAgent, callback_context: CallbackContext
    ) -> types.Content | None:
        await make_deterministic(restate_context())
        return None

    async def after_agent_callback(
        self, *, agent: BaseAgent, callback_context: CallbackContext
    ) -> types.Content | None:
        _current_batch.set(None)
        return None

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        _current_batch.set(None)

    # -- model requests ------------------------------------------------------------------------

    async def before_model_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest
    ) -> LlmResponse | None:
        ctx = restate_context()
        clock = await make_deterministic(ctx)
        invocation = callback_context.get_invocation_context()
        _current_batch.set(None)
        try:
            # ADK counts the calls it makes itself; this one it does not make.
            invocation.increment_llm_call_count()
        except Exception as error:  # the limit is reached on every replay alike
            return _fail_run(llm_request, TerminalError(str(error)))
        llm = await _model_of(invocation)
        try:
            turn = await ctx.run_typed(
                f"call LLM ({callback_context.agent_name})",
                request_model,
                self._step_options,
                llm,
                llm_request,
            )
        except TerminalError as error:
            return _fail_run(llm_request, error)
        clock.advance(turn.at)
        response = await _after_model(callback_context, turn.response)
        _current_batch.set(_batch_of(response, clock, frozenset(llm_request.tools_dict)))
        return response

    # -- tools -------------------------------------------------------------------------------------

    async def before_tool_callback(
        self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext
    ) -> dict[str, Any] | None:
        batch = _current_batch.get()
        call_id = tool_context.function_call_id
        if batch is None or call_id is None or call_id not in batch.ids:
            return None
        task = asyncio.current_task()
        if task is not None:
            # Whatever ends this call (even a callback that skips ours), the next one goes.
            task.add_done_callback(lambda _: batch.turnstile.allow_next_after(call_id))
        await batch.turnstile.wait_for(call_id)
        if tool.name not in batch.known_tools:
            # ADK answers an unknown tool itself and runs no after-tool callback for it.
            batch.turnstile.allow_next_after(call_id)
        return None

    async def after_tool_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
        result: dict[str, Any],
    ) -> dict[str, Any] | None:
        batch = _current_batch.get()
        call_id = tool_context.function_call_id
        if batch is not None and call_id is not None and call_id in batch.ids:
            batch.turnstile.allow_next_after(call_id)
        return None

    async def on_tool_error_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
        error: Exception,
    ) -> dict[str, Any] | None:
        passes_through = (TerminalError, RetryableError, asyncio.CancelledError)
        if isinstance(error, passes_through) or is_internal_exception(error):
            return None
        logger.warning("tool %r failed, the model gets the error: %r", tool.name, error)
        return {"error": f"{type(error).__name__}: {error}"}
