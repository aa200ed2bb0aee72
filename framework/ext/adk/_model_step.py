"""One model request as one durable step: what runs inside ``ctx.run`` (ask the model,
gather what it streams into one response, name its function calls), what is journaled,
and which provider errors no retry can fix."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from google.adk.flows.llm_flows.functions import AF_FUNCTION_CALL_ID_PREFIX
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import BaseModel

from framework import RunOptions
from framework.exceptions import TerminalError
from framework.ext.adk._serde import ModelSerde

# Provider answers that a retry may well fix: timeout, conflict, too early, rate limited.
_RETRYABLE_CLIENT_CODES = frozenset({408, 409, 425, 429})

DEFAULT_MODEL_RUN_OPTIONS: RunOptions[Any] = RunOptions(
    max_attempts=6,
    initial_retry_interval=timedelta(seconds=1),
    retry_interval_factor=2.0,
    max_retry_interval=timedelta(seconds=30),
)


class ModelTurn(BaseModel):
    """What the journal keeps of one model request: the response, and when it arrived (the
    deterministic clock moves to that time on every replay)."""

    response: LlmResponse
    at: float


TURN_SERDE: ModelSerde[ModelTurn] = ModelSerde(ModelTurn)


def step_options(run_options: RunOptions[Any] | None) -> RunOptions[ModelTurn]:
    """The caller's retry policy (or ours), with the serde that round-trips the turn."""
    chosen = run_options if run_options is not None else DEFAULT_MODEL_RUN_OPTIONS
    return RunOptions(
        serde=TURN_SERDE,
        max_attempts=chosen.max_attempts,
        max_duration=chosen.max_duration,
        initial_retry_interval=chosen.initial_retry_interval,
        max_retry_interval=chosen.max_retry_interval,
        retry_interval_factor=chosen.retry_interval_factor,
        max_retry_duration=chosen.max_retry_duration,
    )


def _status_of(error: BaseException) -> int | None:
    for attribute in ("status_code", "code", "status"):
        value = getattr(error, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def is_permanent(error: Exception) -> bool:
    """A provider error that the same request would get again: a 4xx that is not about
    timing or rate limits, or a programming error in the model adapter."""
    if isinstance(error, (TypeError, NotImplementedError)):
        return True
    status = _status_of(error)
    return status is not None and 400 <= status < 500 and status not in _RETRYABLE_CLIENT_CODES


def merge_responses(responses: list[LlmResponse]) -> LlmResponse:
    """One response for the whole request: the complete responses' parts in order (or, if
    the model only streamed partial chunks, their text joined)."""
    complete = [response for response in responses if not response.partial]
    chosen = complete or responses
    if not chosen:
        return LlmResponse()
    if len(chosen) == 1:
        return chosen[0].model_copy(update={"partial": None})
    parts: list[types.Part] = []
    for response in chosen:
        for part in (response.content.parts or []) if response.content else []:
            text, previous = part.text, parts[-1].text if parts else None
            joinable = not complete and not part.thought and not (parts and parts[-1].thought)
            if joinable and text is not None and previous is not None:
                parts[-1] = parts[-1].model_copy(update={"text": previous + text})
            else:
                parts.append(part)
    last = chosen[-1]
    role = next((r.content.role for r in reversed(chosen) if r.content and r.content.role), None)
    return last.model_copy(
        update={"content": types.Content(role=role or "model", parts=parts), "partial": None}
    )


def name_function_calls(response: LlmResponse) -> list[str]:
    """Give every function call an id (ADK's client-side form, so ADK strips it again before
    the next request) and return them in the model's order. Done inside the step, the ids
    are journaled: a replay hands the tools the same ids."""
    ids: list[str] = []
    for part in (response.content.parts or []) if response.content else []:
        call = part.function_call
        if call is None:
            continue
        if not call.id:
            call.id = f"{AF_FUNCTION_CALL_ID_PREFIX}{uuid.uuid4()}"
        ids.append(call.id)
    return ids


async def request_model(llm: BaseLlm, request: LlmRequest) -> ModelTurn:
    """The step itself: ask ``llm`` once and journal the answer."""
    try:
        responses = [response async for response in llm.generate_content_async(request)]
    except TerminalError:
        raise
    except Exception as error:
        if is_permanent(error):
            raise TerminalError(
                f"the model {llm.model!r} refused the request: {type(error).__name__}: {error}"
            ) from error
        raise
    response = merge_responses(responses)
    name_function_calls(response)
    return ModelTurn(response=response, at=time.time())
