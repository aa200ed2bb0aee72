"""Hooks: code of yours around every attempt of a handler and around every ``ctx.run``
closure that really runs (never around a replayed one), for tracing, metrics, per-step
timeouts or an auth context::

    class Timing(framework.Hook):
        async def around_step(self, step, proceed):
            started = time.perf_counter()
            try:
                return await proceed()
            finally:
                metrics.observe(step.name, time.perf_counter() - started)

    orders = framework.Service("Orders", hooks=[Timing()])

A hook must call ``proceed()`` once and return (or raise) what it returns. Hooks given to a
service wrap those given to one of its handlers; the first in a list is the outermost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from framework._runtime.hooks import Proceed, StepInfo

if TYPE_CHECKING:
    from framework._api.context import Request


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """One attempt of a handler: the first, or a retry or resumption after a failure,
    crash or suspension (which replays the journal before running new code)."""

    invocation_id: str
    target: str  # "Service/handler"
    attempt: int  # 1 for the first attempt since the last journaled step, 2 for a retry...
    request: Request


class Hook:
    """Override either method (or both); the defaults just proceed."""

    async def around_attempt(self, attempt: AttemptInfo, proceed: Proceed) -> Any:
        """Around one attempt of the handler's body (replayed steps included)."""
        return await proceed()

    async def around_step(self, step: StepInfo, proceed: Proceed) -> Any:
        """Around one ``ctx.run`` closure running for real (retries included)."""
        return await proceed()


def overrides(hook: Hook, method: str) -> bool:
    """Whether ``hook`` does something in ``method`` (the defaults are skipped)."""
    return getattr(type(hook), method) is not getattr(Hook, method)


__all__ = ["AttemptInfo", "Hook", "StepInfo"]
