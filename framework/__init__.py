"""Durable execution for Python: Restate services as decorated async functions.

The public surface mirrors the official Restate Python SDK (``restate-sdk``): a service
module written for it runs here after changing its imports.
"""

from framework._calls import ScopedContext
from framework._combinators import as_completed, gather, select, wait_completed
from framework._context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    RunOptions,
    WorkflowContext,
    WorkflowSharedContext,
)
from framework._endpoint import RestateApp, app
from framework._futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from framework._logging import RestateLoggingFilter, getLogger
from framework._services import InvocationRetryPolicy, Service, VirtualObject, Workflow
from framework.exceptions import (
    RetryableError,
    SdkInternalBaseException,
    TerminalError,
    is_internal_exception,
)
from framework.serde import BytesSerde, DefaultSerde, JsonSerde, MsgspecJsonSerde, Serde

__all__ = [
    "BytesSerde",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "InvocationRetryPolicy",
    "JsonSerde",
    "MsgspecJsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateApp",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RestateLoggingFilter",
    "RetryableError",
    "RunOptions",
    "ScopedContext",
    "SdkInternalBaseException",
    "SendHandle",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "gather",
    "getLogger",
    "is_internal_exception",
    "select",
    "wait_completed",
]
