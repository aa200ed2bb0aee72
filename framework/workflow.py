"""The official SDK's ``restate.workflow``: the ``Workflow`` decorator and what it builds."""

from typing import TypeVar

from framework._api.services import Handler, InvocationRetryPolicy, ServiceTag, Workflow
from framework.serde import DefaultSerde, Serde

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the official SDK's name
O = TypeVar("O")  # noqa: E741 - the official SDK's name

__all__ = [
    "DefaultSerde",
    "Handler",
    "InvocationRetryPolicy",
    "Serde",
    "ServiceTag",
    "Workflow",
]
