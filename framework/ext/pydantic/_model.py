"""The durable model: every request to the wrapped model is one journaled step, so a retry or
a replay gets the response the model gave the first time instead of asking it again."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.exceptions import (
    ModelHTTPError,
    ModelQuotaExceededError,
    ModelRequestRejectedError,
    UserError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import (
    CompletedStreamedResponse,
    KnownModelName,
    Model,
    ModelRequestContext,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage

from framework import RunOptions
from framework.exceptions import TerminalError
from framework.ext._common import restate_context
from framework.ext.pydantic._serde import MODEL_RESPONSE_SERDE, PydanticTypeAdapter
from framework.serde import Serde

T = TypeVar("T")

MODEL_STEP = "Model call"
"""The journal name of every model request (streamed or not, so a replay that takes the other
path still matches)."""

# Without a retry policy a broken request would be retried forever: give up after a few
# attempts and let the run fail with what the provider said.
DEFAULT_RUN_OPTIONS: RunOptions[Any] = RunOptions(max_attempts=3)

# The event stream handler of the agent run in progress, when it was given to that run rather
# than to the wrapper: RestateAgent sets it so that streamed model events reach it live.
run_event_stream_handler: ContextVar[EventStreamHandler[Any] | None] = ContextVar(
    "framework_ext_pydantic_run_event_stream_handler", default=None
)

# HTTP statuses below 500 that a later attempt can still get past: timeouts and rate limits.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})


def step_options(options: RunOptions[Any] | None, serde: Serde[T]) -> RunOptions[T]:
    """The caller's retry policy (or the default) with this step's serde."""
    base = options if options is not None else DEFAULT_RUN_OPTIONS
    return dataclasses.replace(base, serde=serde, type_hint=None)


def as_terminal(error: Exception) -> TerminalError | None:
    """The TerminalError for a model failure that no retry can fix, else None."""
    if isinstance(error, ModelHTTPError):
        status = error.status_code
        if status < 500 and status not in _RETRYABLE_CLIENT_STATUSES:
            return TerminalError(f"the model refused the request: {error}", status_code=status)
        return None
    if isinstance(error, ModelRequestRejectedError | ModelQuotaExceededError):
        return TerminalError(f"the model refused the request: {error}", status_code=400)
    if isinstance(error, UserError | NotImplementedError):
        # A configuration mistake: the same request fails the same way every time.
        return TerminalError(f"{type(error).__name__}: {error}", status_code=500)
    return None


async def _terminal_on_hopeless(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except Exception as error:
        terminal = as_terminal(error)
        if terminal is None:
            raise
        raise terminal from error


class RestateModelWrapper(WrapperModel):
    """A model whose requests are durable steps of the running Restate handler.

    ``run_options`` is the retry policy of each request (default: 3 attempts; a provider's
    4xx answer other than 408/429 fails at once, as a TerminalError). ``event_stream_handler``
    receives the events of a streamed request while the model produces them (that is, inside
    the step: it runs again only if the step is retried, never on replay, and must not use the
    Restate context).
    """

    def __init__(
        self,
        wrapped: Model | KnownModelName | str,
        run_options: RunOptions[Any] | None = None,
        event_stream_handler: EventStreamHandler[Any] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.run_options = run_options
        self.event_stream_handler = event_stream_handler
        self._response_options = step_options(run_options, MODEL_RESPONSE_SERDE)

    async def request(self, *args: Any, **kwargs: Any) -> ModelResponse:
        ctx = restate_context()

        async def ask_model() -> ModelResponse:
            return await _terminal_on_hopeless(lambda: self.wrapped.request(*args, **kwargs))

        return await ctx.run_typed(MODEL_STEP, ask_model, self._response_options)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        ctx = restate_context()
        handler = run_event_stream_handler.get() or self.event_stream_handler

        async def stream_to_end() -> ModelResponse:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                if handler is not None and run_context is not None:
                    await handler(run_context, stream)
                async for _ in stream:  # whatever the handler left unread
                    pass
                return stream.get()

        async def collect() -> ModelResponse:
            return await _terminal_on_hopeless(stream_to_end)

        response = await ctx.run_typed(MODEL_STEP, collect, self._response_options)
        # The agent still wants a stream: replay the journaled response as one, part by part.
        yield CompletedStreamedResponse(
            response, model_request_parameters=model_request_parameters, replay_events=True
        )

    async def count_tokens(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> RequestUsage:
        ctx = restate_context()
        options = step_options(self.run_options, PydanticTypeAdapter[RequestUsage](RequestUsage))

        async def count() -> RequestUsage:
            return await _terminal_on_hopeless(
                lambda: self.wrapped.count_tokens(
                    messages, model_settings, model_request_parameters
                )
            )

        return await ctx.run_typed("Model count tokens", count, options)

    async def compact_messages(
        self,
        request_context: ModelRequestContext,
        *,
        instructions: str | None = None,
    ) -> ModelResponse:
        ctx = restate_context()

        async def compact() -> ModelResponse:
            return await _terminal_on_hopeless(
                lambda: self.wrapped.compact_messages(request_context, instructions=instructions)
            )

        return await ctx.run_typed("Model compact messages", compact, self._response_options)
