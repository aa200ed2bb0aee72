"""Durable execution for Python: Restate services as decorated async functions.

The public surface mirrors the official Restate Python SDK (``restate-sdk``): a service
module written for it runs here after changing its imports.
"""

from typing import TYPE_CHECKING, Any

from framework._api.combinators import (
    all_settled,
    as_completed,
    first_success,
    gather,
    select,
    wait_completed,
)
from framework._api.context import (
    Context,
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
from framework._api.hooks import AttemptInfo, Hook, StepInfo
from framework._api.services import InvocationRetryPolicy, Service, VirtualObject, Workflow
from framework._endpoint import RestateApp
from framework._runtime.codec import JournalValueCodec, JournalValueCodecProvider
from framework._runtime.logging import RestateLoggingFilter, getLogger
from framework.endpoint import app
from framework.exceptions import (
    DurableTimeoutError,
    HttpError,
    PauseError,
    RetryableError,
    SdkInternalBaseException,
    TerminalError,
    is_internal_exception,
)
from framework.serde import BytesSerde, DefaultSerde, JsonSerde, MsgspecJsonSerde, Serde

if TYPE_CHECKING:
    from framework.client import (
        RestateClient,
        RestateClientSendHandle,
        create_client,
    )
    from framework.testing import HarnessEnvironment, create_test_harness, test_harness

# The ingress client and the test harness are imported on first use.
_LAZY = {
    "RestateClient": "framework.client",
    "RestateClientSendHandle": "framework.client",
    "create_client": "framework.client",
    "HarnessEnvironment": "framework.testing",
    "create_test_harness": "framework.testing",
    "test_harness": "framework.testing",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'framework' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


__all__ = [
    "AttemptInfo",
    "BytesSerde",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "DurableTimeoutError",
    "HarnessEnvironment",
    "Hook",
    "HttpError",
    "InvocationRetryPolicy",
    "JournalValueCodec",
    "JournalValueCodecProvider",
    "JsonSerde",
    "MsgspecJsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PauseError",
    "Request",
    "RestateApp",
    "RestateClient",
    "RestateClientSendHandle",
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
    "StepInfo",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "all_settled",
    "app",
    "as_completed",
    "create_client",
    "create_test_harness",
    "first_success",
    "gather",
    "getLogger",
    "is_internal_exception",
    "select",
    "test_harness",
    "wait_completed",
]
