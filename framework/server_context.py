"""The official SDK's ``restate.server_context``, for what integrations import from it: the
current context, per-attempt extension data and the replay flag. (The official module is
its invocation runtime; ours lives in private modules and is not importable by these names.)
"""

from framework._api.context import (
    AttemptFinishedEvent,
    Context,
    ObjectContext,
    Request,
    RunOptions,
)
from framework._api.extensions import (
    auto_close_extension_data,
    clear_extension_data,
    current_context,
    get_extension_data,
    restate_context_is_replaying,
    set_extension_data,
)
from framework._api.futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from framework.exceptions import (
    RetryableError,
    SdkInternalBaseException,
    SdkInternalException,
    SuspendedException,
    TerminalError,
)
from framework.serde import BytesSerde, DefaultSerde, Serde

__all__ = [
    "AttemptFinishedEvent",
    "BytesSerde",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "ObjectContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RetryableError",
    "RunOptions",
    "SdkInternalBaseException",
    "SdkInternalException",
    "SendHandle",
    "Serde",
    "SuspendedException",
    "TerminalError",
    "auto_close_extension_data",
    "clear_extension_data",
    "current_context",
    "get_extension_data",
    "restate_context_is_replaying",
    "set_extension_data",
]
