"""Services written the way users of the official SDK write them (``import framework as
restate``, Pydantic models, module-level services), covering what its documentation teaches:
a greeter with deterministic randomness, a saga that compensates in reverse, concurrent steps,
awakeables resolved from outside, a workflow waiting on a promise or a timer, step retries,
calls, sends and delayed sends. Our own code; ``tests/test_portable.py`` drives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import cast

from pydantic import BaseModel

import framework as restate
from framework.exceptions import TerminalError


class Greeting(BaseModel):
    name: str
    times: int = 1


class Greeted(BaseModel):
    message: str
    lucky: int
    token: str


greeter = restate.Service("PortableGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, req: Greeting) -> Greeted:
    lucky = ctx.random().randint(1, 100)
    token = str(ctx.uuid())
    message = await ctx.run_typed("compose", lambda: " ".join([f"Hi {req.name}!"] * req.times))
    return Greeted(message=message, lucky=lucky, token=token)


class Subscription(BaseModel):
    user: str
    services: list[str]
    card: str


subscriptions = restate.Service("PortableSubscriptions")


@subscriptions.handler()
async def subscribe(ctx: restate.Context, req: Subscription) -> list[str]:
    undo: list[tuple[str, str]] = []
    undone: list[str] = []
    try:
        for service in req.services:
            undo.append(("cancel", service))
            await ctx.run_typed(f"subscribe {service}", _subscribe, user=req.user, service=service)
        undo.append(("refund", req.card))
        await ctx.run_typed("charge", _charge, card=req.card)
    except TerminalError as error:
        for action, what in reversed(undo):
            undone.append(
                await ctx.run_typed(
                    f"{action} {what}",
                    # mypy cannot infer a lambda with defaults; a def would add a return hint
                    cast(Callable[[], str], lambda a=action, w=what: f"{a} {w}"),
                )
            )
        raise TerminalError(f"{error.message}; undone: {', '.join(undone)}", 402) from error
    return [f"{req.user}@{service}" for service in req.services]


def _subscribe(user: str, service: str) -> str:
    if service == "closed":
        raise TerminalError(f"{service} takes no new subscribers")
    return f"{user}@{service}"


def _charge(card: str) -> str:
    if card.startswith("0000"):
        raise TerminalError("card declined")
    return f"charged {card[-4:]}"


@subscriptions.handler()
async def subscribe_all(ctx: restate.Context, services: list[str]) -> list[str]:
    async def subscribe_one(service: str) -> str:
        await asyncio.sleep(0.2)  # a slow partner API: three in parallel take ~0.2 s
        return service.upper()

    steps = [ctx.run_typed(f"partner {s}", subscribe_one, service=s) for s in services]
    done = await restate.gather(*steps)
    return [await step for step in done]


inbox = restate.VirtualObject("PortableInbox")


@inbox.handler()
async def put(ctx: restate.ObjectContext, awakeable_id: str) -> None:
    ctx.set("awakeable", awakeable_id)


@inbox.handler(kind="shared")
async def current(ctx: restate.ObjectSharedContext) -> str | None:
    return await ctx.get("awakeable")


payments = restate.Service("PortablePayments")


@payments.handler()
async def pay(ctx: restate.Context, order: str) -> str:
    awakeable_id, confirmation = ctx.awakeable(type_hint=str)
    ctx.object_send(put, order, awakeable_id)
    try:
        return f"paid: {await confirmation}"
    except TerminalError as error:
        return f"not paid: {error.message}"


signup = restate.Workflow("PortableSignup")


@signup.main()
async def run(ctx: restate.WorkflowContext, timeout_ms: int) -> str:
    match await restate.select(
        confirmed=ctx.promise("email-link", type_hint=str).value(),
        timeout=ctx.sleep(timedelta(milliseconds=timeout_ms)),
    ):
        case ["confirmed", link]:
            return f"confirmed via {link}"
        case _:
            return "timed out"


@signup.handler()
async def click(ctx: restate.WorkflowSharedContext, link: str) -> None:
    await ctx.promise("email-link", type_hint=str).resolve(link)


flaky = restate.Service("PortableFlaky")
ATTEMPTS: dict[str, int] = {}


@flaky.handler()
async def call_partner(ctx: restate.Context, request_id: str) -> str:
    def partner() -> str:
        ATTEMPTS[request_id] = ATTEMPTS.get(request_id, 0) + 1
        raise ConnectionError("partner unreachable")

    options: restate.RunOptions[str] = restate.RunOptions(
        max_attempts=3, initial_retry_interval=timedelta(milliseconds=10)
    )
    try:
        return await ctx.run_typed("partner", partner, options)
    except TerminalError:
        return f"gave up after {ATTEMPTS.get(request_id)} attempts"


tally = restate.VirtualObject("PortableTally")


@tally.handler()
async def add(ctx: restate.ObjectContext, amount: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + amount
    ctx.set("total", total)
    return total


@tally.handler(kind="shared")
async def total(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("total", type_hint=int) or 0


fanout = restate.Service("PortableFanout")


@fanout.handler()
async def spread(ctx: restate.Context, key: str) -> int:
    now = await ctx.object_call(add, key, 1)
    ctx.object_send(add, key, 10)
    ctx.object_send(add, key, 100, send_delay=timedelta(milliseconds=500))
    return now


app = restate.app([greeter, subscriptions, inbox, payments, signup, flaky, tally, fanout])
