"""Where a call goes: handler references, scopes, headers, awakeable ids.

A leaf: the ingress client resolves its targets here without loading the invocation
runtime. The checks fail at the call site, with the fix in the message, instead of letting
a wrong target reach the server.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from framework._protocol import Header, ProtocolVersion
from framework.exceptions import TerminalError
from framework.serde import DefaultSerde, Serde

if TYPE_CHECKING:
    from framework._api.services import Handler

I = TypeVar("I")  # noqa: E741 - the official SDK's name for a handler's input type
O = TypeVar("O")  # noqa: E741 - and for its output type


HandlerType = Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]] | str


_AWAKEABLE_ID = re.compile(r"^(sign_1|prom_1)[A-Za-z0-9_-]{27,}$")


def check_awakeable_id(awakeable_id: str) -> None:
    # An id the server cannot place would fail (or worse) on its side; refuse it here,
    # for good, since no retry can fix it.
    if not isinstance(awakeable_id, str) or not _AWAKEABLE_ID.match(awakeable_id):
        raise TerminalError(
            f"{awakeable_id!r} is not an awakeable id: pass the id ctx.awakeable() returned "
            "(it starts with 'sign_1')",
            status_code=400,
        )


_SCOPE_PART = re.compile(r"^[a-zA-Z0-9_.-]{1,36}$")


def check_scope_name(scope: str) -> None:
    if not isinstance(scope, str) or not _SCOPE_PART.match(scope):
        raise ValueError(
            f"invalid scope {scope!r}: use 1 to 36 of the characters a-z A-Z 0-9 _ . -"
        )


def check_scope(version: ProtocolVersion, scope: str | None, limit_key: str | None) -> None:
    if scope is None:
        if limit_key is not None:
            raise ValueError("limit_key needs a scope: ctx.scope(name).service_call(...)")
        return
    check_scope_name(scope)
    if limit_key is not None:
        parts = limit_key.split("/")
        if len(parts) > 2 or not all(_SCOPE_PART.match(p) for p in parts):
            raise ValueError(
                f"invalid limit_key {limit_key!r}: one or two levels separated by '/', each "
                "1 to 36 of the characters a-z A-Z 0-9 _ . -"
            )
    if version < ProtocolVersion.V7:
        raise RuntimeError(
            f"scoped calls need service protocol v7, but this invocation runs on "
            f"v{int(version)}: start restate-server with "
            "RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7=true and "
            "RESTATE_EXPERIMENTAL_ENABLE_VQUEUES=true"
        )


class Target(NamedTuple):
    service: str
    handler: str
    input_serde: Serde[Any]
    output_serde: Serde[Any]


_JSON: DefaultSerde[Any] = DefaultSerde()
KIND_NAMES = {"service": "a Service", "object": "a VirtualObject", "workflow": "a Workflow"}


def resolve_handler(tpe: Any, kind: str | None, method: str) -> tuple[str, str, Handler | None]:
    """``(service, handler, its Handler)`` for a decorated handler function, or
    ``(service, handler, None)`` for a ``"Service/handler"`` string; ``kind`` (if given) is
    the service kind the calling ``method`` (e.g. ``"ctx.object_call"``) expects."""
    caller = method.partition(".")[0]
    if isinstance(tpe, str):
        service, sep, handler = tpe.partition("/")
        if not sep or not service or not handler or "/" in handler:
            raise ValueError(
                f"{method}({tpe!r}, ...): name a handler as 'Service/handler', or pass "
                "the decorated handler function itself"
            )
        return service, handler, None
    info: Handler | None = getattr(tpe, "__restate_handler__", None)
    if info is None:
        name = getattr(tpe, "__qualname__", None) or repr(tpe)
        raise TypeError(
            f"{method} needs a handler: pass a function decorated with @service.handler() "
            f"(or a 'Service/handler' string), not {name}"
        )
    if kind is not None and info.service_kind != kind:
        actual = info.service_kind
        args = "(handler, arg)" if actual == "service" else "(handler, key, arg)"
        raise TypeError(
            f"{method}: {info.service_name}/{info.name} is a handler of "
            f"{KIND_NAMES[actual]}; call it with {caller}.{actual}_call{args} or "
            f"{caller}.{actual}_send{args}"
        )
    return info.service_name, info.name, info


def resolve_target(tpe: Any, kind: str, method: str) -> Target:
    """Who a call from a handler goes to, and the serdes of its argument and result."""
    service, handler, info = resolve_handler(tpe, kind, f"ctx.{method}")
    if info is None:
        return Target(service, handler, _JSON, _JSON)
    return Target(service, handler, info.input_serde, info.output_serde)


def to_headers(headers: dict[str, str] | None) -> list[Header]:
    return [Header(key=k, value=v) for k, v in headers.items()] if headers else []


__all__ = [
    "HandlerType",
    "Target",
    "check_awakeable_id",
    "check_scope",
    "check_scope_name",
    "resolve_handler",
    "resolve_target",
    "to_headers",
]
