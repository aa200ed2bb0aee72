"""KillTestRunner and KillTestSingleton: a call tree that only a kill can end."""

from __future__ import annotations

from framework import ObjectContext, VirtualObject
from tests.conformance.awakeable_holder import hold

runner = VirtualObject("KillTestRunner")
singleton = VirtualObject("KillTestSingleton")


@runner.handler(name="startCallTree")
async def start_call_tree(ctx: ObjectContext) -> None:
    await ctx.object_call(recursive_call, ctx.key(), None)


@singleton.handler(name="recursiveCall")
async def recursive_call(ctx: ObjectContext) -> None:
    awakeable_id, unlocked = ctx.awakeable(type_hint=str)
    await ctx.object_call(hold, ctx.key(), awakeable_id)
    await unlocked
    # This key is locked by this very invocation: the call never starts.
    await ctx.object_call(recursive_call, ctx.key(), None)


@singleton.handler(name="isUnlocked")
async def is_unlocked(ctx: ObjectContext) -> None:
    """Answers only once no ``recursiveCall`` holds this key."""
