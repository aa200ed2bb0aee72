"""pydantic-ai agents as durable Restate handlers (``pip install 'framework[pydantic-ai]'``).

``RestateAgent(agent)`` runs an agent inside a handler: each model request is a journaled
step (``RestateModelWrapper``), each tool call too (``RestateContextRunToolSet``), so a
retried, crashed or replayed invocation resumes the run without asking the model again or
repeating a tool's side effect. ``PydanticTypeAdapter`` journals values of any type Pydantic
validates; ``restate_context()`` / ``restate_object_context()`` reach the running handler's
context from a tool.
"""

from __future__ import annotations

from framework.ext._common import require, restate_context, restate_object_context

require("pydantic_ai", "pydantic-ai", "framework.ext.pydantic")

from framework.ext.pydantic._agent import RestateAgent  # noqa: E402
from framework.ext.pydantic._model import RestateModelWrapper  # noqa: E402
from framework.ext.pydantic._serde import PydanticTypeAdapter  # noqa: E402
from framework.ext.pydantic._toolset import RestateContextRunToolSet  # noqa: E402

__all__ = [
    "PydanticTypeAdapter",
    "RestateAgent",
    "RestateContextRunToolSet",
    "RestateModelWrapper",
    "restate_context",
    "restate_object_context",
]
