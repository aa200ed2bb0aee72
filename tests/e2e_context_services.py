"""Services for the end-to-end tests of the whole context API (tests/test_e2e_context.py).

Written as a user of the official Restate Python SDK would write them, importing from
``framework`` instead of ``restate``. Side effects and what the handlers observed go to
ledger files under $FRAMEWORK_TEST_DIR, so a test can tell how often a step ran and in
which order things happened.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import framework
from framework import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    RestateDurableFuture,
    Service,
    TerminalError,
    VirtualObject,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
    as_completed,
    gather,
    getLogger,
    select,
    wait_completed,
)

# -- ledgers ---------------------------------------------------------------------------------


def _dir() -> Path:
    path = Path(os.environ.get("FRAMEWORK_TEST_DIR", "/tmp/framework-test"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def record(name: str, line: str) -> int:
    """Append a line to the ledger ``name``; return how many lines it has now."""
    path = _dir() / name
    with path.open("a") as f:
        f.write(line + "\n")
    return len(path.read_text().splitlines())


# -- logging: records of the replay-aware logger go to stderr (the service's log) -----------

_log_root = logging.getLogger("ctxtests")
if not _log_root.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("ctxtests-log %(message)s"))
    _log_root.addHandler(_handler)
    _log_root.setLevel(logging.INFO)
    _log_root.propagate = False
logger = getLogger("ctxtests.chatty")
# A plain logger, for contrast: it logs on every replay too.
plain_logger = logging.getLogger("ctxtests.plain")


# -- plain calls -----------------------------------------------------------------------------

math = Service("CtxMath")


@math.handler()
async def square(ctx: Context, n: int) -> int:
    return n * n


@math.handler()
async def slow_echo(ctx: Context, millis: int) -> int:
    """Answers ``millis`` after sleeping that long."""
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


@math.handler()
async def counted(ctx: Context, key: str) -> int:
    """Counts its executions in the ledger ``{key}.counted``."""
    return await ctx.run_typed("count", record, name=f"{key}.counted", line="ran")


@math.handler()
async def echo_headers(ctx: Context, tag: str) -> dict[str, str]:
    headers = {k.lower(): v for k, v in ctx.request().headers.items()}
    return {k: v for k, v in headers.items() if k.startswith("x-ctx-")} | {"tag": tag}


@math.handler()
async def stamp(ctx: Context, key: str) -> None:
    """Records the wall-clock time it ran at."""
    await ctx.run_typed("stamp", lambda: record(f"{key}.stamp", repr(time.time())))


calls = Service("CtxCalls")


@calls.handler()
async def fan_out(ctx: Context, count: int) -> list[int]:
    futures = [ctx.service_call(square, i) for i in range(count)]
    await gather(*futures)
    return [await f for f in futures]


@calls.handler()
async def call_twice(ctx: Context, key: str) -> list[int]:
    """Two calls with the same idempotency key: the callee runs once."""
    first = await ctx.service_call(counted, key, idempotency_key=f"idem-{key}")
    second = await ctx.service_call(counted, key, idempotency_key=f"idem-{key}")
    return [first, second]


@calls.handler()
async def with_headers(ctx: Context, tag: str) -> dict[str, str]:
    return await ctx.service_call(echo_headers, tag, headers={"x-ctx-trace": f"trace-{tag}"})


@calls.handler()
async def delayed(ctx: Context, key: str) -> dict[str, Any]:
    sent_at = await ctx.time()
    handle = ctx.service_send(stamp, key, send_delay=timedelta(milliseconds=800))
    return {"sent_at": sent_at, "id": await handle.invocation_id()}


@calls.handler()
async def ids(ctx: Context, n: int) -> dict[str, Any]:
    call = ctx.service_call(square, n)
    call_id = await call.invocation_id()
    result = await call
    handle = ctx.service_send(square, n + 1)
    send_id = await handle.invocation_id()
    return {"call_id": call_id, "result": result, "send_id": send_id}


@calls.handler()
async def send_and_attach(ctx: Context, millis: int) -> int:
    handle = ctx.service_send(slow_echo, millis)
    invocation_id = await handle.invocation_id()
    return await ctx.attach_invocation(invocation_id, type_hint=int)


@calls.handler()
async def by_name(ctx: Context, req: dict[str, Any]) -> int:
    """Calls CtxMath/square and sends to CtxList/append by name, with raw bytes."""
    raw = await ctx.generic_call("CtxMath", "square", json.dumps(req["n"]).encode())
    ctx.generic_send("CtxList", "append", json.dumps(req["n"]).encode(), key=req["key"])
    return int(json.loads(raw))


@calls.handler()
async def append_via_call(ctx: Context, req: dict[str, Any]) -> int:
    """An object call: answers the length of the list after appending."""
    return await ctx.object_call(append, req["key"], req["n"])


@calls.handler()
async def produce(ctx: Context, req: dict[str, Any]) -> int:
    """Sends ``count`` numbers, in order, to one CtxList key."""
    for i in range(req["count"]):
        ctx.object_send(append, req["key"], i)
    return int(req["count"])


@calls.handler()
async def drive_signup(ctx: Context, workflow_id: str) -> dict[str, Any]:
    """Starts a workflow, resolves its promise through a shared handler, attaches to it."""
    handle = ctx.workflow_send(run, workflow_id, f"{workflow_id}@example.com")
    await ctx.workflow_call(click, workflow_id, "from-a-service")
    result: dict[str, Any] = await ctx.attach_invocation(await handle.invocation_id())
    return result


# -- a virtual object ------------------------------------------------------------------------

lists = VirtualObject("CtxList")


@lists.handler()
async def append(ctx: ObjectContext, n: int) -> int:
    items: list[int] = await ctx.get("items") or []
    items.append(n)
    ctx.set("items", items)
    return len(items)


@lists.handler(kind="shared")
async def items(ctx: ObjectSharedContext) -> list[int]:
    return await ctx.get("items") or []


# -- durable sleep across a crash of the service ---------------------------------------------

sleeper = Service("CtxSleeper")


@sleeper.handler()
async def long_nap(ctx: Context, key: str) -> str:
    await ctx.run_typed("before", lambda: record(f"{key}.nap", "before"))
    await ctx.sleep(timedelta(seconds=2))
    await ctx.run_typed("after", lambda: record(f"{key}.nap", "after"))
    return f"{key} slept 2s"


# -- a saga ----------------------------------------------------------------------------------

payments = Service("CtxPayments")


@payments.handler()
async def charge(ctx: Context, amount: int) -> str:
    if amount > 100:
        raise TerminalError(f"card declined for {amount}", status_code=402)
    return f"charged {amount}"


@dataclass
class Booking:
    key: str
    amount: int


saga = Service("CtxSaga")


@saga.handler()
async def book(ctx: Context, booking: Booking) -> str:
    ledger = f"{booking.key}.saga"
    compensations: list[Callable[[], Awaitable[int]]] = []
    try:
        await ctx.run_typed("reserve hotel", record, name=ledger, line="reserve hotel")
        compensations.append(
            lambda: ctx.run_typed("cancel hotel", record, name=ledger, line="cancel hotel")
        )
        receipt = await ctx.service_call(charge, booking.amount)
        compensations.append(lambda: ctx.run_typed("refund", record, name=ledger, line="refund"))
        await ctx.run_typed("confirm", record, name=ledger, line="confirm")
        return f"booked, {receipt}"
    except TerminalError:
        for compensate in reversed(compensations):
            await compensate()
        raise


# -- awakeables, select, cancellation ---------------------------------------------------------

waits = Service("CtxAwait")


def publish(key: str, what: str, value: str) -> None:
    """Make a value (an awakeable id, an invocation id) visible to the test."""
    record(f"{key}.{what}", value)


@waits.handler()
async def wait_for_approval(ctx: Context, key: str) -> str:
    awakeable_id, approval = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", publish, key=key, what="awakeable", value=awakeable_id)
    try:
        value = await approval
    except TerminalError as error:
        return f"rejected: {error.message} ({error.status_code})"
    return f"approved: {value}"


@waits.handler()
async def resolve_it(ctx: Context, req: dict[str, str]) -> None:
    ctx.resolve_awakeable(req["id"], req["value"])


@waits.handler()
async def reject_it(ctx: Context, req: dict[str, str]) -> None:
    ctx.reject_awakeable(req["id"], req["message"], failure_code=418)


@waits.handler()
async def race(ctx: Context, req: dict[str, Any]) -> list[Any]:
    """An awakeable against a timeout."""
    awakeable_id, approval = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", publish, key=req["key"], what="awakeable", value=awakeable_id)
    timeout = ctx.sleep(timedelta(milliseconds=req["timeout_ms"]))
    try:
        who, what = await select(approved=approval, timeout=timeout)
    except TerminalError as error:
        return ["failed", error.message]
    return [who, what]


@waits.handler()
async def wait_until_cancelled(ctx: Context, key: str) -> str:
    awakeable_id, approval = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", publish, key=key, what="awakeable", value=awakeable_id)
    try:
        return await approval
    except TerminalError as error:
        await ctx.run_typed(
            "compensate", record, name=f"{key}.cancel", line=f"compensated {error.status_code}"
        )
        raise


cancels = Service("CtxCancel")


@cancels.handler()
async def child(ctx: Context, key: str) -> str:
    await ctx.run_typed("started", publish, key=key, what="child", value=ctx.request().id)
    try:
        await ctx.sleep(timedelta(seconds=30))
    except TerminalError as error:
        line = f"child compensated {error.status_code}"
        await ctx.run_typed("compensate", record, name=f"{key}.ledger", line=line)
        raise
    await ctx.run_typed("done", record, name=f"{key}.ledger", line="child done")
    return "child finished"


@cancels.handler()
async def parent(ctx: Context, key: str) -> str:
    try:
        return await ctx.service_call(child, key)
    except TerminalError as error:
        line = f"parent compensated {error.status_code}"
        await ctx.run_typed("compensate", record, name=f"{key}.ledger", line=line)
        raise


@cancels.handler()
async def cancel_sent(ctx: Context, key: str) -> dict[str, Any]:
    """Sends a long sleeper, cancels it with ctx.cancel_invocation, attaches to its end."""
    handle = ctx.service_send(child, key)
    invocation_id = await handle.invocation_id()
    ctx.cancel_invocation(invocation_id)
    try:
        await ctx.attach_invocation(invocation_id, type_hint=str)
    except TerminalError as error:
        return {"id": invocation_id, "code": error.status_code}
    return {"id": invocation_id, "code": 200}


@cancels.handler()
async def cancel_call(ctx: Context, key: str) -> dict[str, Any]:
    """Calls a long sleeper and cancels that call through its future."""
    call = ctx.service_call(child, key)
    invocation_id = await call.invocation_id()
    await call.cancel_invocation()
    try:
        await call
    except TerminalError as error:
        return {"id": invocation_id, "code": error.status_code}
    return {"id": invocation_id, "code": 200}


# -- named signals ---------------------------------------------------------------------------

signals = Service("CtxSignals")


@signals.handler()
async def wait_for_signals(ctx: Context, key: str) -> dict[str, str]:
    await ctx.run_typed("publish", publish, key=key, what="invocation", value=ctx.request().id)
    go = await ctx.signal("go", type_hint=str)
    try:
        second = await ctx.signal("second", type_hint=str)
    except TerminalError as error:
        second = f"rejected: {error.message} ({error.status_code})"
    return {"go": go, "second": second}


@signals.handler()
async def send_go(ctx: Context, req: dict[str, str]) -> None:
    ctx.resolve_signal(req["id"], "go", req["value"])


@signals.handler()
async def reject_second(ctx: Context, req: dict[str, str]) -> None:
    ctx.reject_signal(req["id"], "second", req["message"], failure_code=418)


# -- combinators -----------------------------------------------------------------------------

combinators = Service("CtxCombinators")


@combinators.handler()
async def completion_order(ctx: Context) -> dict[str, Any]:
    """wait_completed, then as_completed, over calls that answer after 700, 100, 400 ms.

    What was observed is recorded with ctx.run, so replays report the first execution's view.
    """
    slow, fast = ctx.service_call(slow_echo, 700), ctx.service_call(slow_echo, 100)
    done, pending = await wait_completed(slow, fast)
    first_wait = await ctx.run_typed(
        "wait_completed saw",
        lambda: {"done": len(done), "pending": len(pending), "fast_done": fast in done},
    )
    await gather(*pending)

    futures = [
        ctx.service_call(slow_echo, 700),
        ctx.service_call(slow_echo, 100),
        ctx.service_call(slow_echo, 400),
    ]
    order: list[int] = []
    index = 0
    async for future in as_completed(*futures):
        value = await future
        # mypy cannot infer a lambda with defaults; a def would add a return hint
        step = cast(Callable[[], int], lambda v=value: v)
        order.append(await ctx.run_typed(f"as_completed {index}", step))
        index += 1
    return {"wait_completed": first_wait, "as_completed": order}


@combinators.handler()
async def parallel_steps(ctx: Context, key: str) -> list[str]:
    """Five ctx.run steps started together, gathered; the first attempt then fails."""

    def draw(i: int) -> str:
        record(f"{key}.draws", str(i))
        return f"{i}:{random.random()}"

    futures: list[RestateDurableFuture[str]] = [
        ctx.run_typed(f"draw {i}", draw, i=i) for i in range(5)
    ]
    await gather(*futures)
    values = [await f for f in futures]
    attempt = record(f"{key}.attempts", json.dumps(values))
    if attempt == 1:
        raise RuntimeError("fail the first attempt on purpose, so that the next one replays")
    return values


# -- a workflow ------------------------------------------------------------------------------

signup_flow = Workflow("CtxSignup")


@signup_flow.main()
async def run(ctx: WorkflowContext, email: str) -> dict[str, Any]:
    ctx.set("status", "waiting for the link")
    link = ctx.promise("link", type_hint=str)
    before = await link.peek()
    await ctx.run_typed("send mail", record, name=f"{ctx.key()}.mail", line=email)
    try:
        clicked = await link.value()
    except TerminalError as error:
        ctx.set("status", f"rejected: {error.message}")
        raise TerminalError(f"link rejected: {error.message}", status_code=410) from error
    ctx.set("status", "verified")
    after = await link.peek()
    same = await ctx.promise("link", type_hint=str)  # awaiting the promise itself
    return {"email": email, "clicked": clicked, "before": before, "after": after, "same": same}


@signup_flow.handler()
async def click(ctx: WorkflowSharedContext, link: str) -> None:
    await ctx.promise("link", type_hint=str).resolve(link)


@signup_flow.handler()
async def deny(ctx: WorkflowSharedContext, reason: str) -> None:
    await ctx.promise("link", type_hint=str).reject(reason)


@signup_flow.handler()
async def status(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get("status", type_hint=str)


@signup_flow.handler()
async def peek(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.promise("link", type_hint=str).peek()


# -- the replay-aware logger -----------------------------------------------------------------

logs = Service("CtxLogs")


@logs.handler()
async def chatty(ctx: Context, key: str) -> str:
    plain_logger.info("%s plain, every attempt", key)
    logger.info("%s line 1, before the first sleep", key)
    await ctx.sleep(timedelta(milliseconds=50))
    logger.info("%s line 2, between the sleeps", key)
    await ctx.sleep(timedelta(milliseconds=50))
    logger.info("%s line 3, after the sleeps", key)
    return "logged"


app = framework.app(
    [
        math,
        calls,
        lists,
        sleeper,
        payments,
        saga,
        waits,
        cancels,
        signals,
        combinators,
        signup_flow,
        logs,
    ]
)
