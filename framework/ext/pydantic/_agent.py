"""The durable agent: a pydantic-ai agent run inside a Restate handler, its model requests and
tool calls journaled, so a retried or replayed handler resumes the run where it was."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any, NoReturn

from pydantic_ai.agent import (
    AbstractAgent,
    AgentRun,
    AgentRunResult,
    EventStreamHandler,
    WrapperAgent,
)
from pydantic_ai.capabilities import AgentCapability
from pydantic_ai.messages import (
    AgentStreamEvent,
    FinalResultEvent,
    ModelMessage,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    UserContent,
)
from pydantic_ai.models import KnownModelName, Model
from pydantic_ai.output import OutputDataT, OutputSpec
from pydantic_ai.result import StreamedRunResult
from pydantic_ai.tools import AgentDepsT, DeferredToolResults, RunContext
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.usage import RunUsage, UsageLimits

from framework import Context, RunOptions
from framework.ext._common import restate_context
from framework.ext.pydantic._model import RestateModelWrapper, run_event_stream_handler
from framework.ext.pydantic._toolset import RestateContextRunToolSet
from framework.logging import restate_context_is_replaying

# Events a streamed model request produces: the model step already handed them to the event
# stream handler as they arrived, so the agent's replay of the journaled response skips them.
_MODEL_STREAM_EVENTS = (PartStartEvent, PartDeltaEvent, PartEndEvent, FinalResultEvent)


def _not_durable(method: str, instead: str) -> TypeError:
    return TypeError(
        f"RestateAgent.{method} cannot run durably inside a Restate handler: use {instead}"
    )


class RestateAgent(WrapperAgent[AgentDepsT, OutputDataT]):
    """Runs ``wrapped`` durably inside the current Restate handler.

    Every model request is a journaled step (``RestateModelWrapper``); with
    ``auto_wrap_tools`` every tool call of the agent's toolsets is one too
    (``RestateContextRunToolSet``), so tools must not use the Restate context then; with
    ``auto_wrap_tools=False`` tools do their side effects as durable steps themselves
    (``restate_context().run_typed(...)``), and may wait on awakeables, sleep, call services.
    Tool calls run one at a time, in the model's order.

    ``event_stream_handler`` receives model events live, inside each model step, and the
    agent's other events (tool calls and their results) as the run makes progress, never
    again for what a replay re-traverses. Wrap the agent once its tools are registered: the
    toolsets are taken at construction.
    """

    def __init__(
        self,
        wrapped: AbstractAgent[AgentDepsT, OutputDataT],
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        auto_wrap_tools: bool = True,
        run_options: RunOptions[Any] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self._handler = event_stream_handler or wrapped.event_stream_handler
        self._run_options = run_options
        self._auto_wrap_tools = auto_wrap_tools
        self._model = self._durable_model(wrapped.model)
        self._toolsets = [self._durable_toolset(toolset) for toolset in wrapped.toolsets]

    # --- what the run uses instead of the wrapped agent's own -----------------------------

    @property
    def model(self) -> Model | KnownModelName | str | None:
        return self._model if self._model is not None else self.wrapped.model

    @property
    def toolsets(self) -> Sequence[AbstractToolset[AgentDepsT]]:
        return self._toolsets

    @property
    def event_stream_handler(self) -> EventStreamHandler[AgentDepsT] | None:
        return self.wrapped_event_stream_handler if self._handler is not None else None

    def _durable_model(self, model: Model | KnownModelName | str | None) -> Model | None:
        if model is None or isinstance(model, RestateModelWrapper):
            return model
        return RestateModelWrapper(model, self._run_options, self._handler)

    def _durable_toolset(self, toolset: AbstractToolset[AgentDepsT]) -> AbstractToolset[AgentDepsT]:
        if not self._auto_wrap_tools or isinstance(toolset, RestateContextRunToolSet):
            return toolset
        return RestateContextRunToolSet(toolset, self._run_options)

    async def wrapped_event_stream_handler(
        self, ctx: RunContext[AgentDepsT], stream: AsyncIterable[AgentStreamEvent]
    ) -> None:
        """Hand the run's events to the user's handler once: skip the model events (the model
        step delivered them) and whatever comes back while the handler replays its journal."""
        handler = run_event_stream_handler.get() or self._handler
        if handler is None:
            async for _ in stream:
                pass
            return

        async def fresh_events() -> AsyncIterator[AgentStreamEvent]:
            async for event in stream:
                if isinstance(event, _MODEL_STREAM_EVENTS) or restate_context_is_replaying.get():
                    continue
                yield event

        await handler(ctx, fresh_events())

    # --- running ---------------------------------------------------------------------------

    @contextmanager
    def _durable_scope(
        self,
        ctx: Context,
        model: Model | KnownModelName | str | None,
        toolsets: Sequence[AbstractToolset[AgentDepsT]] | None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None,
    ) -> Iterator[EventStreamHandler[AgentDepsT] | None]:
        """Swap the durable model and toolsets in for one run; yields the handler to pass."""
        run_model = self._durable_model(model) if model is not None else self._model
        run_toolsets = [*self._toolsets, *(self._durable_toolset(t) for t in toolsets or ())]

        async def durable_sleep(seconds: float) -> None:
            await ctx.sleep(timedelta(seconds=seconds))

        with ExitStack() as stack:
            # run_toolsets holds the agent's own function toolset (wrapped when tools are):
            # `tools=[]` keeps pydantic-ai from adding the original a second time.
            overrides: dict[str, Any] = {"toolsets": run_toolsets, "tools": []}
            if run_model is not None:
                overrides["model"] = run_model
            stack.enter_context(self.wrapped.override(**overrides))
            # Concurrent tool calls would reach the journal in whatever order the event loop
            # picks (a tool awaiting its own steps interleaves with the next one), and a
            # replay taking another order fails with a journal mismatch. One at a time, in
            # the model's order, the journal order is the same on every run.
            stack.enter_context(AbstractAgent.parallel_tool_call_execution_mode("sequential"))
            # Waits inside the agent graph (polling a background response) as durable timers.
            stack.enter_context(AbstractAgent.using_sleep(durable_sleep))
            handler_token = run_event_stream_handler.set(event_stream_handler)
            try:
                has_handler = event_stream_handler is not None or self._handler is not None
                yield self.wrapped_event_stream_handler if has_handler else None
            finally:
                run_event_stream_handler.reset(handler_token)

    @staticmethod
    def _replay_stable_ids(
        ctx: Context,
        message_history: Sequence[ModelMessage] | None,
        conversation_id: str | None,
    ) -> tuple[str, str | None]:
        """A run id, and a conversation id when pydantic-ai would make one up: drawn from the
        invocation's deterministic random, so every replay stamps the same ids."""
        run_id = str(ctx.uuid())
        inherits = conversation_id is None and any(
            message.conversation_id for message in message_history or ()
        )
        if conversation_id not in (None, "new") or inherits:
            return run_id, conversation_id
        return run_id, str(ctx.uuid())

    async def run(  # type: ignore[override]
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        output_type: OutputSpec[Any] | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        deferred_tool_results: DeferredToolResults | None = None,
        conversation_id: str | None = None,
        model: Model | KnownModelName | str | None = None,
        instructions: Any = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: Any = None,
        usage_limits: UsageLimits | None = None,
        usage: RunUsage | None = None,
        metadata: Any = None,
        retries: Any = None,
        infer_name: bool = True,
        toolsets: Sequence[AbstractToolset[AgentDepsT]] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        capabilities: Sequence[AgentCapability[AgentDepsT]] | None = None,
        spec: Any = None,
    ) -> AgentRunResult[Any]:
        """Run the agent to its output, durably; call it from inside a Restate handler."""
        ctx = restate_context()
        run_id, conversation_id = self._replay_stable_ids(ctx, message_history, conversation_id)
        with self._durable_scope(ctx, model, toolsets, event_stream_handler) as handler:
            return await self.wrapped.run(
                user_prompt,
                output_type=output_type,
                message_history=message_history,
                deferred_tool_results=deferred_tool_results,
                conversation_id=conversation_id,
                run_id=run_id,
                instructions=instructions,
                deps=deps,
                model_settings=model_settings,
                usage_limits=usage_limits,
                usage=usage,
                metadata=metadata,
                retries=retries,
                infer_name=False,
                event_stream_handler=handler,
                capabilities=capabilities,
                spec=spec,
            )

    @asynccontextmanager
    async def run_stream(  # type: ignore[override]
        self,
        user_prompt: str | Sequence[UserContent] | None = None,
        *,
        output_type: OutputSpec[Any] | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        deferred_tool_results: DeferredToolResults | None = None,
        conversation_id: str | None = None,
        model: Model | KnownModelName | str | None = None,
        instructions: Any = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: Any = None,
        usage_limits: UsageLimits | None = None,
        usage: RunUsage | None = None,
        metadata: Any = None,
        retries: Any = None,
        infer_name: bool = True,
        toolsets: Sequence[AbstractToolset[AgentDepsT]] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        capabilities: Sequence[AgentCapability[AgentDepsT]] | None = None,
        spec: Any = None,
    ) -> AsyncIterator[StreamedRunResult[AgentDepsT, Any]]:
        """Stream the run's output, durably: each model response is journaled whole and then
        streamed to you from the journal, so text arrives per response, not per token (use
        ``run`` with an ``event_stream_handler`` to see tokens as the model produces them)."""
        ctx = restate_context()
        run_id, conversation_id = self._replay_stable_ids(ctx, message_history, conversation_id)
        with self._durable_scope(ctx, model, toolsets, event_stream_handler) as handler:
            async with self.wrapped.run_stream(
                user_prompt,
                output_type=output_type,
                message_history=message_history,
                deferred_tool_results=deferred_tool_results,
                conversation_id=conversation_id,
                run_id=run_id,
                instructions=instructions,
                deps=deps,
                model_settings=model_settings,
                usage_limits=usage_limits,
                usage=usage,
                metadata=metadata,
                retries=retries,
                infer_name=False,
                event_stream_handler=handler,
                capabilities=capabilities,
                spec=spec,
            ) as result:
                yield result

    def run_sync(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _not_durable("run_sync", "await agent.run(...) in the (async) handler")

    def run_stream_sync(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _not_durable("run_stream_sync", "async with agent.run_stream(...) in the handler")

    def run_stream_events(self, *args: Any, **kwargs: Any) -> NoReturn:
        # It runs the agent in a task of its own while the caller consumes events: whatever
        # the caller journals per event would interleave with the run's steps at random.
        raise _not_durable(
            "run_stream_events", "agent.run(..., event_stream_handler=...) to see the events"
        )

    @asynccontextmanager
    async def iter(
        self, user_prompt: str | Sequence[UserContent] | None = None, **kwargs: Any
    ) -> AsyncIterator[AgentRun[AgentDepsT, Any]]:
        """Iterate over the run's nodes, durably, as ``run`` would run them."""
        ctx = restate_context()
        run_id, conversation_id = self._replay_stable_ids(
            ctx, kwargs.get("message_history"), kwargs.pop("conversation_id", None)
        )
        kwargs.setdefault("run_id", run_id)
        if kwargs.get("conversation") is None:  # a Conversation brings its own id
            kwargs["conversation_id"] = conversation_id
        model = kwargs.pop("model", None)
        toolsets = kwargs.pop("toolsets", None)
        with self._durable_scope(ctx, model, toolsets, None):
            async with self.wrapped.iter(user_prompt, **kwargs) as agent_run:
                yield agent_run
