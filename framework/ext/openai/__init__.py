"""Durable agents of the OpenAI Agents SDK (``pip install 'framework[openai]'``).

``DurableRunner.run`` runs ``agents.Runner.run`` inside a Restate handler: every model call
is a durable step (its response journaled, returned from the journal on a retry), the tool
calls of a turn run in the model's order, and ``use_restate_session=True`` keeps the
conversation in the virtual object's state. ``durable_function_tool`` makes a tool's body a
durable step; ``raise_terminal_errors`` and ``propagate_cancellation`` keep TerminalError,
cancellation and the SDK's control flow from becoming tool results.
"""

from framework.ext._common import require as _require

_require("agents", "openai", "framework.ext.openai")

from framework.ext._common import restate_context, restate_object_context  # noqa: E402
from framework.ext.openai._runner import DurableRunner  # noqa: E402
from framework.ext.openai._tools import (  # noqa: E402
    durable_function_tool,
    propagate_cancellation,
    raise_terminal_errors,
)

__all__ = [
    "DurableRunner",
    "durable_function_tool",
    "propagate_cancellation",
    "raise_terminal_errors",
    "restate_context",
    "restate_object_context",
]
