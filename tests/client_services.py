"""Services for the ingress client and test harness tests (tests/test_client.py,
tests/test_harness.py).

Self-contained: nothing is written outside the Restate server, so the same module works in a
child process (``tests.client_services:app``) and served in-process by the harness.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import timedelta

import msgspec

from framework import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    Service,
    TerminalError,
    VirtualObject,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
)
from framework import app as make_app

# -- a stateless service ---------------------------------------------------------------------

greeter = Service("ClientGreeter")


@dataclass
class Person:
    name: str
    age: int


class Profile(msgspec.Struct):
    greeting: str
    adult: bool
    tags: list[str]


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


@greeter.handler()
async def hello(ctx: Context) -> str:
    """A handler without input."""
    return "hello, nobody"


@greeter.handler()
async def profile(ctx: Context, person: Person) -> Profile:
    """Typed input (a dataclass) and output (a msgspec Struct)."""
    return Profile(greeting=f"Hi {person.name}", adult=person.age >= 18, tags=[person.name.lower()])


@greeter.handler()
async def echo_bytes(ctx: Context, data: bytes) -> bytes:
    return data[::-1]


@greeter.handler()
async def slow(ctx: Context, millis: int) -> int:
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


@greeter.handler()
async def now(ctx: Context) -> float:
    """The wall-clock time it ran at (for delayed sends)."""
    return await ctx.run_typed("now", time.time)


@greeter.handler()
async def refuse(ctx: Context, reason: str) -> str:
    raise TerminalError(f"refused: {reason}", 418)


@greeter.handler()
async def headers(ctx: Context) -> dict[str, str]:
    """The ``x-client-*`` request headers the handler saw."""
    return {
        k.lower(): v for k, v in ctx.request().headers.items() if k.lower().startswith("x-client-")
    }


# -- a virtual object ------------------------------------------------------------------------

counter = VirtualObject("ClientCounter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    value: int = (await ctx.get("value")) or 0
    ctx.set("value", value + delta)
    return value + delta


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    value: int = (await ctx.get("value")) or 0
    return value


# -- a workflow that waits on an awakeable ---------------------------------------------------

approval = Workflow("ClientApproval")


@approval.main()
async def run(ctx: WorkflowContext, subject: str) -> str:
    """Publishes an awakeable id (through the promise ``awakeable``), then waits on it."""
    awakeable_id, answer = ctx.awakeable(type_hint=str)
    await ctx.promise("awakeable", type_hint=str).resolve(awakeable_id)
    try:
        value = await answer
    except TerminalError as error:
        raise TerminalError(f"{subject} rejected: {error.message}", 409) from None
    return f"{subject} approved: {value}"


@approval.handler()
async def awakeable_id(ctx: WorkflowSharedContext) -> str:
    """The awakeable the workflow waits on (waits until it is published)."""
    value: str = await ctx.promise("awakeable", type_hint=str).value()
    return value


# -- for the harness: a non-deterministic handler and a failing one ----------------------------

flaky = Service("ClientFlaky")


@flaky.handler()
async def nondeterministic(ctx: Context) -> str:
    """Names a step after ``random.random()`` (outside ``ctx.run``): a replay sees another name."""
    await ctx.run_typed(f"step-{random.random()}", lambda: "first")
    await ctx.sleep(timedelta(milliseconds=50))
    await ctx.run_typed("second", lambda: "second")
    return "done"


@flaky.handler()
async def boom(ctx: Context) -> str:
    raise RuntimeError("boom: not a terminal error, so the server retries it")


app = make_app([greeter, counter, approval, flaky])
