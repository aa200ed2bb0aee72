"""The official SDK's ``restate.client_types``: the ingress client's types."""

from typing import TypeVar

from framework._api.targets import HandlerType
from framework.client import HttpError, RestateClient, RestateClientSendHandle, RestateScopedClient

I = TypeVar("I")  # noqa: E741 - the official SDK's name
O = TypeVar("O")  # noqa: E741 - the official SDK's name

__all__ = [
    "HandlerType",
    "HttpError",
    "RestateClient",
    "RestateClientSendHandle",
    "RestateScopedClient",
]
