"""What every integration shares: the running handler's context, typed, and an ImportError
that names the extra to install when an agent library is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from framework._api.context import Context, ObjectContext
from framework._api.extensions import current_context


def restate_context() -> Context:
    """The context of the handler this code runs in (a tool, a model call, a callback).

    Raises RuntimeError outside a handler: an agent that reaches Restate must run inside one.
    """
    ctx = current_context()
    if ctx is None:
        raise RuntimeError(
            "no Restate handler is running here: call the agent from inside a handler "
            "(@service.handler(), @object.handler(), @workflow.main())"
        )
    return ctx


def restate_object_context() -> ObjectContext:
    """Like ``restate_context``, for a virtual object's exclusive handler (it may write state)."""
    ctx = restate_context()
    if not isinstance(ctx, ObjectContext):
        raise RuntimeError(
            f"this handler's context is a {type(ctx).__name__}, not an ObjectContext: call "
            "the agent from an exclusive handler of a VirtualObject (or use restate_context())"
        )
    return ctx


def require(module: str, extra: str, integration: str) -> ModuleType:
    """Import an agent library, or fail with the install command that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{integration} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'framework[{extra}]'"
        ) from error
