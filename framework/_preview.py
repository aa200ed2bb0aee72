"""The official SDK's ``restate._preview``: features that may still change."""

from typing import TypeVar

from framework._api.services import Service, VirtualObject, Workflow, handler_from_callable

T = TypeVar("T")


def explicit_recovery(target: T) -> T:
    """Run a service's handlers (or one handler: put this decorator above ``@x.handler()``)
    with explicit recovery: a retried or resumed attempt does not replay the journal but runs
    the handler again from the start, every context operation anew.

    The server keeps the journal of earlier attempts and appends the new attempt's commands
    after it. So, on every attempt: ``ctx.run`` closures run again, state reads see the
    current state (what earlier attempts set included), calls and sends are new requests
    (give them an idempotency key that is the same on every attempt, e.g. derived from
    ``ctx.request().id``, to reach the same invocation), and awakeables are new ones. An await
    that suspends the invocation (one longer than the server's inactivity timeout) restarts
    the handler on resume, so such a handler may never finish: keep its awaits short.
    """
    if isinstance(target, Service | VirtualObject | Workflow):
        target.explicit_recovery = True
    else:
        handler_from_callable(target).explicit_recovery = True  # type: ignore[arg-type]
    return target


__all__ = ["Service", "VirtualObject", "Workflow", "explicit_recovery", "handler_from_callable"]
