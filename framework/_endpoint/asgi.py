"""The plain ASGI types the endpoint and the servers share (starlette-style: mappings, not
TypedDicts, so any ASGI server's events fit). ``framework.aws_lambda`` keeps the official
SDK's TypedDict names for its own events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]
