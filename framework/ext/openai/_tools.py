"""Tools whose bodies are durable steps, and the failure handlers that keep Restate's control
flow (TerminalError, cancellation, suspension) out of the tool results the model reads."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, overload

from agents import AgentBase, FunctionTool, RunContextWrapper, function_tool
from agents.function_schema import DocstringStyle
from agents.tool import ToolErrorFunction, ToolFunction, default_tool_error_function

from framework import RunOptions
from framework.exceptions import TerminalError, is_internal_exception
from framework.ext._common import restate_context

_CANCELLED_STATUS = 409

IsEnabled = bool | Callable[[RunContextWrapper[Any], AgentBase[Any]], bool | Awaitable[bool]]

# Retries as any ctx.run's; the result decodes by the tool function's return annotation.
_TOOL_STEP_OPTIONS: RunOptions[Any] = RunOptions()


def _cancellation_of(error: BaseException) -> asyncio.CancelledError | None:
    """The asyncio cancellation behind ``error``: the SDK hands a tool's cancellation to the
    failure handler wrapped in an Exception that keeps it as ``cancelled_error``."""
    if isinstance(error, asyncio.CancelledError):
        return error
    cancelled = getattr(error, "cancelled_error", None)
    return cancelled if isinstance(cancelled, asyncio.CancelledError) else None


def _reraise_control_flow(error: BaseException) -> None:
    """Raise what must unwind the agent: the SDK's signals and asyncio cancellation."""
    if is_internal_exception(error):
        raise error
    cancelled = _cancellation_of(error)
    if cancelled is not None:
        raise cancelled


def raise_terminal_errors(context: RunContextWrapper[Any], error: Exception) -> str:
    """A ``failure_error_function`` for tools that reach Restate.

    A TerminalError (a step that failed for good, the invocation being cancelled) and the
    SDK's own control flow fail the agent run; any other error becomes the message the model
    reads, the one the agents library's default handler gives.
    """
    _reraise_control_flow(error)
    if isinstance(error, TerminalError):
        raise error
    return default_tool_error_function(context, error)


def propagate_cancellation(
    failure_error_function: ToolErrorFunction | None = None,
) -> ToolErrorFunction:
    """Wrap ``failure_error_function`` (default: the agents library's) so that cancellation
    (asyncio's, and Restate's TerminalError 409) and the SDK's own control flow unwind the
    run; every other error is left to the wrapped handler."""
    delegate: ToolErrorFunction = (
        failure_error_function
        if failure_error_function is not None
        else default_tool_error_function
    )

    def handle(context: RunContextWrapper[Any], error: Exception) -> str | Awaitable[str]:
        _reraise_control_flow(error)
        if isinstance(error, TerminalError) and error.status_code == _CANCELLED_STATUS:
            raise error
        return delegate(context, error)

    return handle


def _durable_body(func: Callable[..., Any], step_name: Callable[[], str]) -> Callable[..., Any]:
    """An async stand-in for ``func`` (same signature, annotations and docstring, so the
    tool's schema is ``func``'s) that runs ``func`` as a durable step."""

    @functools.wraps(func)
    async def run_as_step(*args: Any, **kwargs: Any) -> Any:
        ctx = restate_context()
        return await ctx.run_typed(step_name(), func, _TOOL_STEP_OPTIONS, *args, **kwargs)

    return run_as_step


@overload
def durable_function_tool(
    func: ToolFunction[...],
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    docstring_style: DocstringStyle | None = None,
    use_docstring_info: bool = True,
    failure_error_function: ToolErrorFunction | None = raise_terminal_errors,
    strict_mode: bool = True,
    is_enabled: IsEnabled = True,
) -> FunctionTool: ...


@overload
def durable_function_tool(
    func: None = None,
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    docstring_style: DocstringStyle | None = None,
    use_docstring_info: bool = True,
    failure_error_function: ToolErrorFunction | None = raise_terminal_errors,
    strict_mode: bool = True,
    is_enabled: IsEnabled = True,
) -> Callable[[ToolFunction[...]], FunctionTool]: ...


def durable_function_tool(
    func: ToolFunction[...] | None = None,
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    docstring_style: DocstringStyle | None = None,
    use_docstring_info: bool = True,
    failure_error_function: ToolErrorFunction | None = raise_terminal_errors,
    strict_mode: bool = True,
    is_enabled: IsEnabled = True,
) -> FunctionTool | Callable[[ToolFunction[...]], FunctionTool]:
    """Like ``agents.function_tool``, with the tool's body run as a durable step named after
    the tool: it runs once, its result is journaled, and a replay returns that result.

    Inside the body the Restate context cannot be used (it is a step); a tool that needs it
    (awakeables, calls, sleeps) is a plain ``function_tool`` with
    ``failure_error_function=raise_terminal_errors``. A body that raises TerminalError fails
    the run (with the default ``failure_error_function``); any other exception is retried
    as a failed step is. A sync body runs in a worker thread, an async one is awaited.
    """

    def build(the_func: ToolFunction[...]) -> FunctionTool:
        if not (inspect.isfunction(the_func) or inspect.ismethod(the_func)):
            raise TypeError(
                "durable_function_tool takes a function (sync or async), not "
                f"{type(the_func).__name__}"
            )
        names: list[str] = []
        tool = function_tool(
            _durable_body(the_func, lambda: names[0]),
            name_override=name_override,
            description_override=description_override,
            docstring_style=docstring_style,
            use_docstring_info=use_docstring_info,
            failure_error_function=failure_error_function,
            strict_mode=strict_mode,
            is_enabled=is_enabled,
        )
        names.append(tool.name)
        return tool

    if func is not None:
        return build(func)
    return build
