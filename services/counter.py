"""A virtual object: one counter per key, its state kept by Restate."""

from framework import ObjectContext, ObjectSharedContext, VirtualObject

counter = VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    value: int = (await ctx.get("value")) or 0
    ctx.set("value", value + delta)
    return value + delta


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    return (await ctx.get("value")) or 0


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    ctx.clear_all()
