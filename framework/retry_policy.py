"""The official SDK's ``restate.retry_policy``: how the server retries a failing invocation."""

from framework._api.services import InvocationRetryPolicy

__all__ = ["InvocationRetryPolicy"]
