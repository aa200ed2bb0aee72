"""NonDeterministic: handlers that take a different step on a retry than on their first try."""

from __future__ import annotations

from datetime import timedelta

from framework import ObjectContext, VirtualObject
from tests.conformance.state_objects import counter_add, counter_get, counter_reset

non_deterministic = VirtualObject("NonDeterministic")

# Invocations that made their first attempt in this process. Every later attempt takes the
# other branch, which the journal of the first one must reject (a journal mismatch).
_tried: set[str] = set()

# The Counter key the diverging calls and sends go to (never the test's own counter).
_BYSTANDER = "non-deterministic-bystander"


def _first_attempt(ctx: ObjectContext) -> bool:
    invocation_id = ctx.request().id
    if invocation_id in _tried:
        return False
    _tried.add(invocation_id)
    return True


async def _retry_then_count(ctx: ObjectContext, first: bool) -> None:
    """End the first attempt once its step is journaled; a later attempt that got past the
    mismatch adds 1 to the Counter of this key (which the test checks never happens)."""
    if first:
        await ctx.run_typed("journal the first branch", lambda: None)
        raise RuntimeError("ending the first attempt, so that the handler is retried")
    ctx.object_send(counter_add, ctx.key(), 1)


@non_deterministic.handler(name="eitherSleepOrCall")
async def either_sleep_or_call(ctx: ObjectContext) -> None:
    first = _first_attempt(ctx)
    if first:
        await ctx.sleep(timedelta(milliseconds=100))
    else:
        await ctx.object_call(counter_get, _BYSTANDER, None)
    await _retry_then_count(ctx, first)


@non_deterministic.handler(name="callDifferentMethod")
async def call_different_method(ctx: ObjectContext) -> None:
    first = _first_attempt(ctx)
    if first:
        await ctx.object_call(counter_get, _BYSTANDER, None)
    else:
        await ctx.object_call(counter_reset, _BYSTANDER, None)
    await _retry_then_count(ctx, first)


@non_deterministic.handler(name="backgroundInvokeWithDifferentTargets")
async def background_invoke_with_different_targets(ctx: ObjectContext) -> None:
    first = _first_attempt(ctx)
    if first:
        ctx.object_send(counter_get, _BYSTANDER, None)
    else:
        ctx.object_send(counter_reset, _BYSTANDER, None)
    await _retry_then_count(ctx, first)


@non_deterministic.handler(name="setDifferentKey")
async def set_different_key(ctx: ObjectContext) -> None:
    first = _first_attempt(ctx)
    ctx.set("a" if first else "b", 1)
    await _retry_then_count(ctx, first)
