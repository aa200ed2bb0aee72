"""Counter, ListObject and MapObject: the conformance contracts' virtual objects over state."""

from __future__ import annotations

from dataclasses import dataclass

from framework import ObjectContext, ObjectSharedContext, TerminalError, VirtualObject

counter = VirtualObject("Counter")
list_object = VirtualObject("ListObject")
map_object = VirtualObject("MapObject")

_TOTAL = "counter"
_ITEMS = "list"


@dataclass
class CounterUpdateResponse:
    """What ``Counter/add`` answers: the count before and after."""

    oldValue: int
    newValue: int


async def _bump(ctx: ObjectContext, value: int) -> CounterUpdateResponse:
    before = await ctx.get(_TOTAL, type_hint=int) or 0
    ctx.set(_TOTAL, before + value)
    return CounterUpdateResponse(oldValue=before, newValue=before + value)


@counter.handler(name="add")
async def counter_add(ctx: ObjectContext, value: int) -> CounterUpdateResponse:
    return await _bump(ctx, value)


@counter.handler(name="addThenFail")
async def counter_add_then_fail(ctx: ObjectContext, value: int) -> None:
    await _bump(ctx, value)
    raise TerminalError(f"added {value} to {ctx.key()}, then failed on purpose")


@counter.handler(name="get", kind="shared")
async def counter_get(ctx: ObjectSharedContext) -> int:
    return await ctx.get(_TOTAL, type_hint=int) or 0


@counter.handler(name="reset")
async def counter_reset(ctx: ObjectContext) -> None:
    ctx.clear(_TOTAL)


@list_object.handler(name="append")
async def list_append(ctx: ObjectContext, value: str) -> None:
    items = await ctx.get(_ITEMS, type_hint=list[str]) or []
    ctx.set(_ITEMS, [*items, value])


@list_object.handler(name="get")
async def list_get(ctx: ObjectContext) -> list[str]:
    return await ctx.get(_ITEMS, type_hint=list[str]) or []


@list_object.handler(name="clear")
async def list_clear(ctx: ObjectContext) -> list[str]:
    items = await ctx.get(_ITEMS, type_hint=list[str]) or []
    ctx.clear(_ITEMS)
    return items


@dataclass
class Entry:
    """One key of a MapObject; each is its own state entry."""

    key: str
    value: str


@map_object.handler(name="set")
async def map_set(ctx: ObjectContext, entry: Entry) -> None:
    ctx.set(entry.key, entry.value)


@map_object.handler(name="get")
async def map_get(ctx: ObjectContext, key: str) -> str:
    return await ctx.get(key, type_hint=str) or ""


@map_object.handler(name="clearAll")
async def map_clear_all(ctx: ObjectContext) -> list[Entry]:
    entries = []
    for name in await ctx.state_keys():
        entries.append(Entry(key=name, value=await ctx.get(name, type_hint=str) or ""))
    ctx.clear_all()
    return entries
