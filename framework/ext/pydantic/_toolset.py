"""Durable tools: every call of a wrapped toolset's tool is one journaled step named after the
tool, so a retried or replayed run gets the recorded result and the side effect happens once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset

from framework import RunOptions
from framework.ext._common import restate_context
from framework.ext.pydantic._model import step_options
from framework.ext.pydantic._serde import TOOL_OUTCOME_SERDE, ToolOutcome


@dataclass
class RestateContextRunToolSet(WrapperToolset[AgentDepsT]):
    """Runs each tool call of ``wrapped`` as ``ctx.run_typed(<tool name>, ...)``.

    The tool body runs inside the step, so it must not use the Restate context (a tool that
    needs it, to wait on an awakeable or call another service, belongs in a toolset that is
    not wrapped). ``run_options`` is each call's retry policy (default: 3 attempts, then the
    run fails). A ``TerminalError`` the tool raises fails the step and the run; the answers
    pydantic-ai understands (``ModelRetry``, ``ToolFailed``, ``CallDeferred``,
    ``ApprovalRequired``) are journaled as the call's outcome and raised again on replay.
    """

    run_options: RunOptions[Any] | None = field(default=None)

    def __post_init__(self) -> None:
        self._options = step_options(self.run_options, TOOL_OUTCOME_SERDE)

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[AgentDepsT],
        tool: ToolsetTool[AgentDepsT],
    ) -> Any:
        restate_ctx = restate_context()

        async def call() -> ToolOutcome:
            try:
                result = await self.wrapped.call_tool(name, tool_args, ctx, tool)
            except Exception as error:
                # Only pydantic-ai's own answers are caught here: anything else (a
                # TerminalError, a crash) is the step's failure, retried or final as usual.
                # Cancellation and the SDK's signals are BaseExceptions and pass untouched.
                outcome = ToolOutcome.of_signal(error)
                if outcome is None:
                    raise
                return outcome
            return ToolOutcome.of_result(result)

        outcome = await restate_ctx.run_typed(name, call, self._options)
        return outcome.unwrap()

    def visit_and_replace(
        self, visitor: Callable[[AbstractToolset[AgentDepsT]], AbstractToolset[AgentDepsT]]
    ) -> AbstractToolset[AgentDepsT]:
        # A visitor swapping the inner toolset (per run, per step) must not drop durability.
        return RestateContextRunToolSet(self.wrapped.visit_and_replace(visitor), self.run_options)
