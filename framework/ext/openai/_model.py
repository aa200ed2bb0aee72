"""Model calls as durable steps: a ``Model`` wrapper that journals each response, a provider
that hands out such wrappers, and a router for runs whose agents carry their own models."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import openai
from agents import (
    Agent,
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelProvider,
    ModelResponse,
    ModelRetryAdvice,
    ModelRetryAdviceRequest,
    ModelRetryNormalizedError,
    ModelSettings,
    ModelTracing,
    Tool,
    TResponseInputItem,
    UserError,
)
from agents.models import get_default_model_settings
from agents.run_config import CallModelData, CallModelInputFilter, ModelInputData
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseOutputItem,
    ResponseOutputItemDoneEvent,
    ResponseStreamEvent,
)

from framework import RunOptions
from framework.exceptions import TerminalError
from framework.ext._common import restate_context
from framework.ext.openai._serde import RoundTripSerde

if TYPE_CHECKING:
    from openai.types.responses.response_prompt_param import ResponsePromptParam

# Model calls are slow and cost money: a handful of spaced attempts, then the run fails for
# good instead of retrying a broken request forever.
DEFAULT_MODEL_RUN_OPTIONS: RunOptions[Any] = RunOptions(
    max_attempts=5,
    initial_retry_interval=timedelta(seconds=1),
    retry_interval_factor=2.0,
    max_retry_interval=timedelta(seconds=30),
)

STEP_NAME = "model response"
STREAM_STEP_NAME = "model response (streamed)"

_RESPONSE_SERDE: RoundTripSerde[ModelResponse] = RoundTripSerde(ModelResponse)
_STREAMED_SERDE: RoundTripSerde[Response] = RoundTripSerde(Response)

# A client error that a retry cannot fix; 408, 409 and 429 are transient on the provider side.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 429})


def step_options(
    run_options: RunOptions[Any] | None, serde: RoundTripSerde[Any]
) -> RunOptions[Any]:
    """The caller's retry settings (or ours), with the serde that journals a model response."""
    base = run_options if run_options is not None else DEFAULT_MODEL_RUN_OPTIONS
    return dataclasses.replace(base, serde=serde, type_hint=None)


def _as_terminal(error: Exception) -> Exception:
    """The error a model step ends with: TerminalError when retrying cannot help."""
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUSES:
            return TerminalError(f"the model provider refused the request (HTTP {status}): {error}")
    if isinstance(error, UserError):
        return TerminalError(f"the model cannot be called as configured: {error}")
    return error


class DurableModel(Model):
    """Runs every request of the wrapped model inside ``ctx.run_typed``.

    The first run calls the model and journals its ``ModelResponse``; a replay returns the
    journaled one without calling the model, so a restarted agent loop takes the same turns.
    """

    def __init__(self, inner: Model, run_options: RunOptions[Any] | None = None) -> None:
        self.inner = inner
        self._options = step_options(run_options, _RESPONSE_SERDE)
        self._stream_options = step_options(run_options, _STREAMED_SERDE)

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        ctx = restate_context()

        async def request() -> ModelResponse:
            try:
                return await self.inner.get_response(
                    system_instructions,
                    input,
                    model_settings,
                    tools,
                    output_schema,
                    handoffs,
                    tracing,
                    previous_response_id=previous_response_id,
                    conversation_id=conversation_id,
                    prompt=prompt,
                )
            except Exception as error:
                raised = _as_terminal(error)
                if raised is error:
                    raise
                raise raised from error

        return await ctx.run_typed(STEP_NAME, request, self._options)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[ResponseStreamEvent]:
        # The deltas cannot be replayed event by event without journaling each one: the step
        # drains the stream and journals the finished response, and the agent loop gets that
        # response as a single completed event.
        ctx = restate_context()

        async def collect() -> Response:
            done_items: list[ResponseOutputItem] = []
            try:
                async for event in self.inner.stream_response(
                    system_instructions,
                    input,
                    model_settings,
                    tools,
                    output_schema,
                    handoffs,
                    tracing,
                    previous_response_id=previous_response_id,
                    conversation_id=conversation_id,
                    prompt=prompt,
                ):
                    if isinstance(event, ResponseOutputItemDoneEvent):
                        done_items.append(event.item)
                    elif isinstance(event, ResponseCompletedEvent):
                        response = event.response
                        if not response.output and done_items:
                            # Some backends report the items only in their done events.
                            response.output = done_items
                        return response
                    elif event.type == "response.incomplete":
                        raise TerminalError(
                            "the model's streamed response ended incomplete "
                            f"({getattr(event.response, 'incomplete_details', None)})"
                        )
                    elif event.type in ("response.failed", "error"):
                        raise RuntimeError(f"the model's stream failed: {event}")
            except Exception as error:
                raised = _as_terminal(error)
                if raised is error:
                    raise
                raise raised from error
            raise RuntimeError("the model's stream ended without a response.completed event")

        response = await ctx.run_typed(STREAM_STEP_NAME, collect, self._stream_options)
        yield ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=0
        )

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        # The step has retried already (and its failure is journaled): a runner-level retry
        # on top would issue new steps for an outcome that is final.
        return ModelRetryAdvice(
            suggested=False,
            reason="the durable step already retried this model call",
            normalized=ModelRetryNormalizedError(is_abort=True),
        )

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)


def durable(model: Model, run_options: RunOptions[Any] | None) -> DurableModel:
    return model if isinstance(model, DurableModel) else DurableModel(model, run_options)


class DurableModelProvider(ModelProvider):
    """Looks models up in the wrapped provider and hands them out as ``DurableModel``s."""

    def __init__(self, inner: ModelProvider, run_options: RunOptions[Any] | None = None) -> None:
        self.inner = inner
        self._run_options = run_options
        self._models: dict[int, DurableModel] = {}

    def get_model(self, model_name: str | None) -> Model:
        return self.wrap(self.inner.get_model(model_name))

    def wrap(self, model: Model) -> DurableModel:
        # One wrapper per underlying model, so the run's cleanup reaches each model once.
        wrapper = self._models.get(id(model))
        if wrapper is None or wrapper.inner is not model:
            wrapper = durable(model, self._run_options)
            self._models[id(model)] = wrapper
        return wrapper

    def wrapped(self) -> list[DurableModel]:
        """The wrappers handed out so far."""
        return list(self._models.values())

    async def aclose(self) -> None:
        await self.inner.aclose()


# The agent whose model the run loop is about to call, recorded by the run's
# call_model_input_filter (which the loop awaits in the same task just before the call).
_calling_agent: contextvars.ContextVar[Agent[Any] | None] = contextvars.ContextVar(
    "framework_openai_calling_agent", default=None
)


def recording_filter(user_filter: CallModelInputFilter | None) -> CallModelInputFilter:
    """A call_model_input_filter that notes the calling agent, then runs the user's one."""

    async def record_agent(data: CallModelData[Any]) -> ModelInputData:
        _calling_agent.set(data.agent)
        if user_filter is None:
            return data.model_data
        result = user_filter(data)
        if isinstance(result, ModelInputData):
            return result
        return await result

    return record_agent


def _implicit_settings(agent: Agent[Any]) -> ModelSettings:
    """The settings the SDK gives an agent that set none, derived from its model name."""
    if agent.model is None or isinstance(agent.model, str):
        return get_default_model_settings(agent.model)
    return ModelSettings()


class AgentModelRouter(Model):
    """Stands in as the run's model when the run names none, so that every agent's model,
    an instance set on the agent included, is reached through a ``DurableModel``.

    The SDK looks a ``Model`` instance on an agent up without asking the provider; as the
    run-wide model, this router is asked instead, and resolves the calling agent's model the
    way the SDK would have (instance as is, a name through the provider).
    """

    def __init__(self, provider: DurableModelProvider) -> None:
        self._provider = provider

    def _resolve(self, model_settings: ModelSettings) -> tuple[DurableModel, ModelSettings]:
        agent = _calling_agent.get()
        if agent is None:
            raise UserError(
                "framework.ext.openai: no agent was recorded before this model call; run "
                "agents through DurableRunner.run"
            )
        if isinstance(agent.model, Model):
            return self._provider.wrap(agent.model), model_settings
        model = self._provider.get_model(agent.model)
        assert isinstance(model, DurableModel)
        implicit = _implicit_settings(agent)
        if agent.model_settings == implicit:
            # With a run-wide model set the SDK drops the defaults it derives from an agent's
            # model name (reasoning settings for some models): put them back under what it
            # passed.
            model_settings = implicit.resolve(model_settings)
        return model, model_settings

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        model, settings = self._resolve(model_settings)
        return await model.get_response(
            system_instructions,
            input,
            settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[ResponseStreamEvent]:
        model, settings = self._resolve(model_settings)
        async for event in model.stream_response(
            system_instructions,
            input,
            settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        ):
            yield event

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        return ModelRetryAdvice(
            suggested=False,
            reason="the durable step already retried this model call",
            normalized=ModelRetryNormalizedError(is_abort=True),
        )

    async def _cleanup_on_run_end(self, owner: object) -> None:
        for model in self._provider.wrapped():
            await model._cleanup_on_run_end(owner)
