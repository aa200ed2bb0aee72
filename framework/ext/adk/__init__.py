"""Google ADK agents made durable by Restate (``pip install 'framework[adk]'``).

Give the runner's app a ``RestatePlugin`` and run it inside a handler: every model
request becomes a journaled step (a retry reads the answer from the journal instead of
asking the model again), concurrent tool calls journal their steps in the model's order,
and ADK's ids and timestamps are the same on every attempt. Tools reach the handler's
context with ``restate_context()`` / ``restate_object_context()`` to make their side
effects durable steps. ``RestateSessionService`` keeps the conversation in a
VirtualObject's state; ``RestateEventSummarizer`` makes event compaction a durable step.
"""

from framework.ext._common import require, restate_context, restate_object_context

require("google.adk", "adk", "framework.ext.adk")

from framework.ext.adk._plugin import RestatePlugin  # noqa: E402
from framework.ext.adk._sessions import RestateSessionService  # noqa: E402
from framework.ext.adk._summarizer import RestateEventSummarizer  # noqa: E402

__all__ = [
    "RestateEventSummarizer",
    "RestatePlugin",
    "RestateSessionService",
    "restate_context",
    "restate_object_context",
]
