"""The official SDK's ``restate._preview``: features that may still change."""

from typing import TypeVar

from framework._services import Service, VirtualObject, Workflow, handler_from_callable

T = TypeVar("T")


def explicit_recovery(target: T) -> T:
    """Mark a service, virtual object, workflow or one handler (use it as the outer
    decorator) for explicit recovery. See the README ("Differences") for what framework does
    with it."""
    if isinstance(target, Service | VirtualObject | Workflow):
        target.explicit_recovery = True
    else:
        handler_from_callable(target).explicit_recovery = True  # type: ignore[arg-type]
    return target


__all__ = ["Service", "VirtualObject", "Workflow", "explicit_recovery", "handler_from_callable"]
