"""VirtualObjectCommandInterpreter: runs awaits over awakeables, timers, steps and signals."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypedDict

from framework import (
    ObjectContext,
    ObjectSharedContext,
    RestateDurableFuture,
    RunOptions,
    TerminalError,
    VirtualObject,
    gather,
    select,
    wait_completed,
)

interpreter = VirtualObject("VirtualObjectCommandInterpreter")

_RESULTS = "results"
_STEP = RunOptions[str]()
TIMEOUT_MESSAGE = "await-timeout"


# -- what can be awaited ----------------------------------------------------------------------


class CreateAwakeable(TypedDict):
    type: Literal["createAwakeable"]
    awakeableKey: str


class Sleep(TypedDict):
    type: Literal["sleep"]
    timeoutMillis: int


class RunReturns(TypedDict):
    type: Literal["runReturns"]
    value: str


class RunThrowTerminalException(TypedDict):
    type: Literal["runThrowTerminalException"]
    reason: str


class CreateSignal(TypedDict):
    type: Literal["createSignal"]
    signalName: str


AwaitableCommand = CreateAwakeable | Sleep | RunReturns | RunThrowTerminalException | CreateSignal


# -- the commands -------------------------------------------------------------------------------


class AwaitOne(TypedDict):
    type: Literal["awaitOne"]
    command: AwaitableCommand


class AwaitMany(TypedDict):
    type: Literal[
        "awaitAny",
        "awaitAnySuccessful",
        "awaitFirstCompleted",
        "awaitFirstSucceededOrAllFailed",
        "awaitAllSucceededOrFirstFailed",
        "awaitAllCompleted",
    ]
    commands: list[AwaitableCommand]


class AwaitAwakeableOrTimeout(TypedDict):
    type: Literal["awaitAwakeableOrTimeout"]
    awakeableKey: str
    timeoutMillis: int


class AwakeableResolution(TypedDict):
    """What ``resolveAwakeable`` takes (as a command, it also has its ``type``)."""

    awakeableKey: str
    value: str


class AwakeableRejection(TypedDict):
    """What ``rejectAwakeable`` takes (as a command, it also has its ``type``)."""

    awakeableKey: str
    reason: str


class ResolveAwakeable(AwakeableResolution):
    type: Literal["resolveAwakeable"]


class RejectAwakeable(AwakeableRejection):
    type: Literal["rejectAwakeable"]


class GetEnvVariable(TypedDict):
    type: Literal["getEnvVariable"]
    envName: str


Command = (
    AwaitOne
    | AwaitMany
    | AwaitAwakeableOrTimeout
    | ResolveAwakeable
    | RejectAwakeable
    | GetEnvVariable
)


class InterpretRequest(TypedDict):
    commands: list[Command]


# -- running them -------------------------------------------------------------------------------


def _awakeable_state(awakeable_key: str) -> str:
    return f"awk-{awakeable_key}"


@dataclass
class _Pending:
    """A durable future and how its value reads as a command result."""

    future: RestateDurableFuture[Any]
    is_timer: bool = False

    def text(self, value: Any) -> str:
        return "sleep" if self.is_timer else str(value)

    async def result(self) -> str:
        return self.text(await self.future)


def _create_awakeable(ctx: ObjectContext, awakeable_key: str) -> RestateDurableFuture[str]:
    awakeable_id, future = ctx.awakeable(type_hint=str)
    ctx.set(_awakeable_state(awakeable_key), awakeable_id)
    return future


async def _returning_step(value: str) -> str:
    await asyncio.sleep(0.001)  # some real work, off the handler's own step
    return value


def _failing_step(reason: str) -> str:
    raise TerminalError(reason)


def _start(ctx: ObjectContext, command: AwaitableCommand) -> _Pending:
    if command["type"] == "createAwakeable":
        return _Pending(_create_awakeable(ctx, command["awakeableKey"]))
    if command["type"] == "sleep":
        delay = timedelta(milliseconds=command["timeoutMillis"])
        return _Pending(ctx.sleep(delay), is_timer=True)
    if command["type"] == "runReturns":
        value = command["value"]
        return _Pending(ctx.run_typed("run returns", _returning_step, _STEP, value))
    if command["type"] == "runThrowTerminalException":
        reason = command["reason"]
        return _Pending(ctx.run_typed("run throws", _failing_step, _STEP, reason))
    if command["type"] == "createSignal":
        return _Pending(ctx.signal(command["signalName"], type_hint=str))
    raise TerminalError(f"unknown awaitable command {command!r}", 400)


async def _first_completed(pending: list[_Pending]) -> str:
    name, value = await select(**{str(i): p.future for i, p in enumerate(pending)})
    return pending[int(name)].text(value)


async def _settle_in_order(pending: list[_Pending]) -> list[_Pending]:
    """Wait for the next of ``pending`` to complete; those completed, in argument order."""
    completed, _ = await wait_completed(*(p.future for p in pending))
    done = {id(future) for future in completed}
    return [p for p in pending if id(p.future) in done]


async def _first_succeeded(pending: list[_Pending]) -> str:
    remaining = list(pending)
    failure = TerminalError("no command to await", 400)
    while remaining:
        for each in await _settle_in_order(remaining):
            remaining.remove(each)
            try:
                return await each.result()
            except TerminalError as error:
                failure = error
    raise failure


async def _all_succeeded(pending: list[_Pending]) -> str:
    remaining = list(pending)
    while remaining:
        for each in await _settle_in_order(remaining):
            remaining.remove(each)
            await each.result()  # the first failure ends the wait
    return "|".join([await p.result() for p in pending])


async def _all_completed(pending: list[_Pending]) -> str:
    await gather(*(p.future for p in pending))
    outcomes = []
    for each in pending:
        try:
            outcomes.append(f"ok:{await each.result()}")
        except TerminalError as error:
            outcomes.append(f"err:{error.message}")
    return "|".join(outcomes)


async def _awakeable_or_timeout(ctx: ObjectContext, command: AwaitAwakeableOrTimeout) -> str:
    awakeable = _create_awakeable(ctx, command["awakeableKey"])
    timer = ctx.sleep(timedelta(milliseconds=command["timeoutMillis"]))
    name, value = await select(awakeable=awakeable, timeout=timer)
    if name == "timeout":
        raise TerminalError(TIMEOUT_MESSAGE, 408)
    return str(value)


async def _held_awakeable(ctx: ObjectSharedContext, awakeable_key: str) -> str:
    awakeable_id = await ctx.get(_awakeable_state(awakeable_key), type_hint=str)
    if awakeable_id is None:
        raise TerminalError(f"no awakeable {awakeable_key!r} was created yet", 404)
    return awakeable_id


async def _execute(ctx: ObjectContext, command: Command) -> str:
    if command["type"] == "awaitOne":
        return await _start(ctx, command["command"]).result()
    if command["type"] == "awaitAwakeableOrTimeout":
        return await _awakeable_or_timeout(ctx, command)
    if command["type"] == "resolveAwakeable":
        ctx.resolve_awakeable(await _held_awakeable(ctx, command["awakeableKey"]), command["value"])
        return ""
    if command["type"] == "rejectAwakeable":
        awakeable_id = await _held_awakeable(ctx, command["awakeableKey"])
        ctx.reject_awakeable(awakeable_id, command["reason"])
        return ""
    if command["type"] == "getEnvVariable":
        name = command["envName"]
        return await ctx.run_typed("read env", lambda: os.environ.get(name, ""))
    if command["type"] in ("awaitAny", "awaitFirstCompleted"):
        return await _first_completed([_start(ctx, c) for c in command["commands"]])
    if command["type"] in ("awaitAnySuccessful", "awaitFirstSucceededOrAllFailed"):
        return await _first_succeeded([_start(ctx, c) for c in command["commands"]])
    if command["type"] == "awaitAllSucceededOrFirstFailed":
        return await _all_succeeded([_start(ctx, c) for c in command["commands"]])
    if command["type"] == "awaitAllCompleted":
        return await _all_completed([_start(ctx, c) for c in command["commands"]])
    raise TerminalError(f"unknown command {command!r}", 400)


@interpreter.handler(name="interpretCommands")
async def interpret_commands(ctx: ObjectContext, req: InterpretRequest) -> str:
    """Run the commands in order, appending each result to ``getResults``; the last one's
    result is the answer ("" when there are none)."""
    last = ""
    for command in req["commands"]:
        last = await _execute(ctx, command)
        results = await ctx.get(_RESULTS, type_hint=list[str]) or []
        ctx.set(_RESULTS, [*results, last])
    return last


@interpreter.handler(name="resolveAwakeable", kind="shared")
async def resolve_awakeable(ctx: ObjectSharedContext, req: AwakeableResolution) -> None:
    ctx.resolve_awakeable(await _held_awakeable(ctx, req["awakeableKey"]), req["value"])


@interpreter.handler(name="rejectAwakeable", kind="shared")
async def reject_awakeable(ctx: ObjectSharedContext, req: AwakeableRejection) -> None:
    ctx.reject_awakeable(await _held_awakeable(ctx, req["awakeableKey"]), req["reason"])


@interpreter.handler(name="hasAwakeable", kind="shared")
async def has_awakeable(ctx: ObjectSharedContext, awakeableKey: str) -> bool:
    return await ctx.get(_awakeable_state(awakeableKey), type_hint=str) is not None


@interpreter.handler(name="getResults", kind="shared")
async def get_results(ctx: ObjectSharedContext) -> list[str]:
    return await ctx.get(_RESULTS, type_hint=list[str]) or []
