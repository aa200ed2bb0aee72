"""AwakeableHolder: a virtual object that keeps one awakeable id until someone unlocks it."""

from __future__ import annotations

from framework import ObjectContext, TerminalError, VirtualObject

awakeable_holder = VirtualObject("AwakeableHolder")

_HELD = "awakeable-id"


@awakeable_holder.handler(name="hold")
async def hold(ctx: ObjectContext, id: str) -> None:
    ctx.set(_HELD, id)


@awakeable_holder.handler(name="hasAwakeable")
async def has_awakeable(ctx: ObjectContext) -> bool:
    return await ctx.get(_HELD, type_hint=str) is not None


@awakeable_holder.handler(name="unlock")
async def unlock(ctx: ObjectContext, payload: str) -> None:
    held = await ctx.get(_HELD, type_hint=str)
    if held is None:
        raise TerminalError(f"{ctx.key()} holds no awakeable to unlock", 412)
    ctx.resolve_awakeable(held, payload)
    ctx.clear(_HELD)
