"""``DurableRunner.run``: ``agents.Runner.run`` inside a Restate handler, with a run config
that makes every model call a durable step and keeps the run's journal the same on replay."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from agents import (
    Agent,
    AgentsException,
    RunConfig,
    Runner,
    RunResult,
    RunState,
    TResponseInputItem,
    UserError,
)
from agents.run_config import ToolExecutionConfig

from framework import RunOptions
from framework.exceptions import TerminalError
from framework.ext._common import restate_context
from framework.ext.openai._model import (
    AgentModelRouter,
    DurableModelProvider,
    durable,
    recording_filter,
)
from framework.ext.openai._session import RestateSession


def _trace_id(invocation_id: str) -> str:
    """A trace id of the SDK's form, the same on every attempt of one invocation."""
    return "trace_" + hashlib.sha256(invocation_id.encode()).hexdigest()[:32]


def _sequential(tool_execution: ToolExecutionConfig | None) -> ToolExecutionConfig:
    # Tool calls of one turn run one after the other, in the model's order: each tool's
    # steps then reach the journal in that order on every attempt (run concurrently, the
    # order would depend on which step finished first, which a replay does not repeat).
    if tool_execution is None:
        return ToolExecutionConfig(max_function_tool_concurrency=1)
    return dataclasses.replace(tool_execution, max_function_tool_concurrency=1)


def _failure_of(error: AgentsException) -> Exception:
    """What a run that failed with ``error`` fails the invocation with.

    The SDK wraps a tool's own exception in a UserError: a TerminalError inside stays
    itself (status and message), any other tool exception is raised as it is (the
    invocation is retried, as for any handler exception). The SDK's own failures are
    final: the journaled responses they come from would produce them again on a retry.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, TerminalError):
            return cause
        cause = cause.__cause__
    wrapped = error.__cause__
    if (
        isinstance(error, UserError)
        and isinstance(wrapped, Exception)
        and not isinstance(wrapped, AgentsException)
    ):
        return wrapped
    final = TerminalError(f"{type(error).__name__}: {error}")
    final.__cause__ = error
    return final


def durable_run_config(
    run_config: RunConfig, run_options: RunOptions[Any] | None, invocation_id: str
) -> RunConfig:
    """A copy of ``run_config`` whose models run their requests as durable steps."""
    provider = DurableModelProvider(run_config.model_provider, run_options)
    changes: dict[str, Any] = {
        "model_provider": provider,
        "tool_execution": _sequential(run_config.tool_execution),
    }
    if run_config.trace_id is None:
        changes["trace_id"] = _trace_id(invocation_id)
    if run_config.model is None:
        changes["model"] = AgentModelRouter(provider)
        changes["call_model_input_filter"] = recording_filter(run_config.call_model_input_filter)
    elif not isinstance(run_config.model, str):
        changes["model"] = durable(run_config.model, run_options)
    return dataclasses.replace(run_config, **changes)


class DurableRunner:
    """Runs an agent inside a Restate handler, durably."""

    @classmethod
    async def run(
        cls,
        starting_agent: Agent[Any],
        input: str | list[TResponseInputItem] | RunState[Any],
        *,
        use_restate_session: bool = False,
        run_options: RunOptions[Any] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """``agents.Runner.run(starting_agent, input, **kwargs)`` with every model call a
        durable step (``run_options`` bounds its retries; a few spaced attempts by default)
        and the tool calls of a turn run in the model's order.

        ``use_restate_session=True`` keeps the conversation in the virtual object's state
        (one history per object key; needs an exclusive handler) instead of a ``session=``.
        A run that fails in the agents library (max turns, a guardrail tripping, a malformed
        response) fails for good, as a TerminalError: its journaled model calls would make
        every retry fail the same way.
        """
        ctx = restate_context()
        given = kwargs.pop("run_config", None)
        # Runner.run closes the provider it makes for a run without one; ours takes its place.
        owns_provider = given is None or (isinstance(given, dict) and "model_provider" not in given)
        if given is None:
            run_config = RunConfig()
        elif isinstance(given, dict):
            run_config = RunConfig(**given)
        else:
            run_config = given
        if use_restate_session:
            if kwargs.get("session") is not None:
                raise ValueError("pass either session= or use_restate_session=True, not both")
            kwargs["session"] = RestateSession()
        config = durable_run_config(run_config, run_options, ctx.request().id)
        try:
            return await Runner.run(starting_agent, input, run_config=config, **kwargs)
        except AgentsException as error:
            raise _failure_of(error)  # noqa: B904 - _failure_of chains it to error
        finally:
            if owns_provider:
                await run_config.model_provider.aclose()
