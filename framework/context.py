"""The official SDK's ``restate.context``: the contexts handlers get and what they return."""

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from framework._api.context import (
    AttemptFinishedEvent,
    Context,
    KeyValueStore,
    ObjectContext,
    ObjectSharedContext,
    Request,
    RunOptions,
    ScopedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from framework._api.futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from framework._api.targets import HandlerType
from framework.serde import DefaultSerde, Serde

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the official SDK's name
O = TypeVar("O")  # noqa: E741 - the official SDK's name
P = ParamSpec("P")

RunAction = Callable[..., Coroutine[Any, Any, T]] | Callable[..., T]
"""What ``ctx.run`` takes: a function, sync or async, returning the step's result."""

__all__ = [
    "AttemptFinishedEvent",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "HandlerType",
    "KeyValueStore",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunAction",
    "RunOptions",
    "ScopedContext",
    "SendHandle",
    "Serde",
    "WorkflowContext",
    "WorkflowSharedContext",
]
