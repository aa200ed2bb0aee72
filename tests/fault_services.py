"""Services the fault tests (tests/test_faults.py) run while processes crash and peers misbehave.

Every side effect is one line appended to ``$FRAMEWORK_TEST_DIR/ledger.txt`` with a single
``write`` on an ``O_APPEND`` descriptor (so lines from concurrent tasks never interleave), and
carries the writer's pid: the test tells which process generation ran a step, and how often.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from framework import Context, InvocationRetryPolicy, Service, app
from framework.exceptions import SdkInternalBaseException

# Retry fast while a process is down (the server's own policy backs off to many seconds).
FAST_RETRIES = InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=1.5,
    max_interval=timedelta(milliseconds=500),
)


def ledger_path() -> Path:
    directory = Path(os.environ.get("FRAMEWORK_TEST_DIR", "/tmp/framework-faults"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "ledger.txt"


def record(*words: object) -> None:
    """Append one line ``words... pid`` to the ledger in one write."""
    line = " ".join(str(w) for w in (*words, os.getpid())) + "\n"
    fd = os.open(ledger_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# -- 1. exactly-once steps while the service process is SIGKILLed ---------------------------

crash = Service("FaultCrash", invocation_retry_policy=FAST_RETRIES)
STEPS = 5


async def _crash_step(key: str, step: int) -> str:
    """A step whose side effect is a ledger line; it returns a value made inside the closure."""
    await asyncio.sleep(random.uniform(0.01, 0.08))
    value = uuid.uuid4().hex
    record(key, step, value)
    # Time between the side effect and the server's acknowledgement: a crash landing here
    # makes the server run the step again (it never heard of this value).
    await asyncio.sleep(random.uniform(0.01, 0.08))
    return value


@crash.handler()
async def five_steps(ctx: Context, key: str) -> dict[str, Any]:
    values = [
        await ctx.run_typed(f"step-{step}", _crash_step, key=key, step=step)
        for step in range(1, STEPS + 1)
    ]
    return {"key": key, "steps": values}


crash_app = app([crash])


# -- 2. the Restate server restarted with invocations in flight ------------------------------

restart = Service(
    "FaultRestart",
    # Idle invocations suspend quickly, so at the restart some are suspended, not just waiting.
    inactivity_timeout=timedelta(milliseconds=500),
    invocation_retry_policy=FAST_RETRIES,
)


@restart.handler()
async def sleeper(ctx: Context, key: str) -> str:
    await ctx.run_typed("before", lambda: record(key, "before"))
    await ctx.sleep(timedelta(seconds=2))
    await ctx.run_typed("after", lambda: record(key, "after"))
    return f"{key} slept"


@restart.handler()
async def waiter(ctx: Context, key: str) -> str:
    awakeable_id, value = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: record(key, "awakeable", awakeable_id))
    got = await value
    return f"{key} got {got}"


async def _slow_step(key: str, seconds: float) -> str:
    record(key, "slow-start")
    await asyncio.sleep(seconds)
    record(key, "slow-end")
    return "slow done"


@restart.handler()
async def stepper(ctx: Context, key: str) -> str:
    done = await ctx.run_typed("slow", _slow_step, key=key, seconds=1.5)
    return f"{key} {done}"


restart_app = app([restart])


# -- 3. slow and broken peers ------------------------------------------------------------------

peers = Service("FaultPeers")


@peers.handler()
async def hold(ctx: Context, key: str) -> str:
    """Waits on a durable timer an hour away: only the peer's stream can bring it."""
    record(key, "start")
    try:
        await ctx.sleep(timedelta(hours=1))
        return "woke"
    except (asyncio.CancelledError, SdkInternalBaseException):
        # The attempt ended under the handler: the durable await it was in raises the SDK's
        # internal signal (a handler elsewhere, in a plain asyncio await, is cancelled).
        record(key, "cancelled")
        raise
    finally:
        record(key, "finally")


@peers.handler()
async def echo(ctx: Context, text: str) -> str:
    return f"echo {text}"


def _running(task: asyncio.Task[Any], qualname: str) -> bool:
    """Whether ``qualname`` (e.g. ``_Pump.run``) is on the task's chain of awaits."""
    awaiting: Any = task.get_coro()
    while awaiting is not None:
        code = getattr(awaiting, "cr_code", None) or getattr(awaiting, "gi_code", None)
        if code is not None and code.co_qualname == qualname:
            return True
        awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "gi_yieldfrom", None)
    return False


@peers.handler()
async def tasks(ctx: Context) -> dict[str, int]:
    """The serving process's work besides this invocation: how many handler tasks run
    (``handlers``) and how many invocation streams are being served (``requests``)."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    handlers = sum(
        getattr(task.get_coro(), "__qualname__", "") == "Invocation._run_handler" for task in others
    )
    # The task serving this invocation's own stream is among the others (it awaits us).
    requests = sum(_running(task, "_Pump.run") for task in others) - 1
    return {"handlers": handlers, "requests": requests}


@peers.handler()
async def task_names(ctx: Context) -> list[str]:
    """What the serving process's asyncio tasks are running (for a failing test's message)."""
    return sorted(repr(task.get_coro()) for task in asyncio.all_tasks())


stuck = Service(
    "FaultStuck",
    inactivity_timeout=timedelta(seconds=1),
    abort_timeout=timedelta(seconds=1),
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=200), max_interval=timedelta(milliseconds=200)
    ),
)


@stuck.handler()
async def never_returns(ctx: Context, key: str) -> str:
    """Blocks outside any durable step: neither completes nor can suspend."""
    record(key, "start")
    try:
        await asyncio.sleep(3600)
    finally:
        record(key, "finally")
    return "unreachable"


peers_app = app([peers, stuck])


# -- 4. graceful shutdown ----------------------------------------------------------------------

drain = Service("FaultDrain", invocation_retry_policy=FAST_RETRIES)


@drain.handler()
async def slow(ctx: Context, key: str) -> str:
    done = await ctx.run_typed("slow", _slow_step, key=key, seconds=1.0)
    return f"{key} {done}"


@drain.handler()
async def napper(ctx: Context, key: str) -> str:
    await ctx.run_typed("before", lambda: record(key, "before"))
    await ctx.sleep(timedelta(seconds=5))
    await ctx.run_typed("after", lambda: record(key, "after"))
    return f"{key} napped"


drain_app = app([drain])
