"""What a step hook is told about the ``ctx.run`` closure it wraps (the API layer's ``Hook``
defines the hooks; the driver, which runs closures, only calls them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A ``ctx.run`` closure about to run for real (hooks never see replayed steps)."""

    invocation_id: str
    target: str  # "Service/handler"
    name: str  # the step's name
    attempt: int  # 1 for the first run of this step, 2 for its first retry, ...


Proceed = Callable[[], Awaitable[Any]]
Info = TypeVar("Info")
StepHook = Callable[[StepInfo, Proceed], Awaitable[Any]]


async def run_through(
    hooks: tuple[Callable[[Info, Proceed], Awaitable[Any]], ...], info: Info, body: Proceed
) -> Any:
    """Run ``body`` inside ``hooks`` (the first one outermost): step hooks here, attempt
    hooks in the API layer."""
    call = body
    for hook in reversed(hooks):
        call = _bind(hook, info, call)
    return await call()


def _bind(hook: Callable[[Info, Proceed], Awaitable[Any]], info: Info, inner: Proceed) -> Proceed:
    def proceed() -> Awaitable[Any]:
        return hook(info, inner)

    return proceed
