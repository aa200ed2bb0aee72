"""Durable execution for Python: Restate services as decorated async functions.

The public surface mirrors the official Restate Python SDK (``restate-sdk``): a service
module written for it runs here after changing its imports.
"""

from framework._context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    RunOptions,
    WorkflowContext,
    WorkflowSharedContext,
)
from framework._endpoint import RestateApp, app
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
    "InvocationRetryPolicy",
    "JsonSerde",
    "MsgspecJsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateApp",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RetryableError",
    "RunOptions",
    "SdkInternalBaseException",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "is_internal_exception",
]
