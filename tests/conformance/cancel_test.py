"""CancelTestRunner and CancelTestBlockingService: cancellation reaching a blocked call tree."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from framework import ObjectContext, TerminalError, VirtualObject
from tests.conformance.awakeable_holder import hold

runner = VirtualObject("CancelTestRunner")
blocking_service = VirtualObject("CancelTestBlockingService")

_CANCELLED = "cancelled"


class BlockingOperation(StrEnum):
    """What the blocking service waits on once it is unlocked."""

    CALL = "CALL"
    SLEEP = "SLEEP"
    AWAKEABLE = "AWAKEABLE"


@runner.handler(name="startTest")
async def start_test(ctx: ObjectContext, operation: BlockingOperation) -> None:
    try:
        await ctx.object_call(block, ctx.key(), BlockingOperation(operation))
    except TerminalError as error:
        if error.status_code != 409:
            raise
        ctx.set(_CANCELLED, True)


@runner.handler(name="verifyTest")
async def verify_test(ctx: ObjectContext) -> bool:
    return await ctx.get(_CANCELLED, type_hint=bool) or False


@blocking_service.handler(name="block")
async def block(ctx: ObjectContext, operation: BlockingOperation) -> None:
    awakeable_id, unlocked = ctx.awakeable(type_hint=str)
    await ctx.object_call(hold, ctx.key(), awakeable_id)
    await unlocked
    match BlockingOperation(operation):
        case BlockingOperation.CALL:
            # The same key is locked by this very invocation: the call waits for ever.
            await ctx.object_call(block, ctx.key(), BlockingOperation(operation))
        case BlockingOperation.SLEEP:
            await ctx.sleep(timedelta(days=1))
        case BlockingOperation.AWAKEABLE:
            _, never = ctx.awakeable(type_hint=str)
            await never


@blocking_service.handler(name="isUnlocked")
async def is_unlocked(ctx: ObjectContext) -> None:
    """Answers only once no ``block`` holds this key."""
