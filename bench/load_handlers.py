"""The load benchmark's handlers (``bench/load.py``, ``tests/test_load.py``), for either SDK.

``BENCH_SDK=official`` binds them to the official ``restate`` SDK, anything else (the default)
to this project's ``framework``; ``BENCH_PREFIX`` goes in front of the service names (``Load``
and ``LoadCounter``), so both deployments can be registered on one server.

Every durable step's closure appends one line, ``"<id> <step>"``, to the ledger file named by
``$LOAD_LEDGER`` (one ``write`` on an ``O_APPEND`` descriptor, so lines from concurrent steps do
not mix). Counting the lines per id proves that each step's side effect happened exactly once.

- ``Load/mixed({"id", "key", "sleep_ms"})``: step ``a``; a call to ``LoadCounter/<key>/add``
  (state get + set, and its own step ``count``); a durable ``ctx.sleep``; steps ``b`` and
  ``c``. Returns ``{"id", "sum": 6, "count": <the counter's new value>}``.
- ``Load/nap({"id", "sleep_ms"})``: one durable ``ctx.sleep``, then step ``woke``; returns
  the id.
- ``Load/live()``: what the serving process holds right now, after a garbage collection:
  ``{"blocks": sys.getallocatedblocks(), "tasks": <asyncio tasks but this one's>}`` (RSS
  keeps the high-water mark of freed memory; live blocks and tasks do not).
- ``Load/hold({"id", "release", "timeout_s"})``: one ``ctx.run`` whose ``async`` closure
  notes ``hold`` and then waits until the file ``release`` exists (or ``timeout_s`` passed),
  so the invocation stays in flight in the service (not suspended) until the caller lets it
  go. Returns the id.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from datetime import timedelta
from typing import Any

SDK = os.environ.get("BENCH_SDK", "framework")
PREFIX = os.environ.get("BENCH_PREFIX", "")
LEDGER = os.environ.get("LOAD_LEDGER", "")

sdk: Any
if SDK == "official":
    import restate as sdk
else:
    import framework as sdk

load = sdk.Service(f"{PREFIX}Load")
counter = sdk.VirtualObject(f"{PREFIX}LoadCounter")


def note(line: str) -> None:
    """Append ``line`` and a newline to the ledger in one write (no-op without a ledger)."""
    if not LEDGER:
        return
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def step(id: str, name: str, value: int) -> int:
    """The body of one durable step: its side effect is one ledger line."""
    note(f"{id} {name}")
    return value


# One event per release file, set by one poller task: waiting costs each invocation nothing
# but its await.
_releases: dict[str, asyncio.Event] = {}
_pollers: set[asyncio.Task[None]] = set()


async def _poll_release(path: str, timeout_s: float, event: asyncio.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    event.set()


async def held(id: str, release: str, timeout_s: float) -> int:
    """Note ``hold``, then wait until ``release`` exists (at most ``timeout_s``)."""
    note(f"{id} hold")
    event = _releases.get(release)
    if event is None:
        event = _releases[release] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(_poll_release(release, timeout_s, event))
        _pollers.add(task)
        task.add_done_callback(_pollers.discard)
    await event.wait()
    return 0


@counter.handler()
async def add(ctx: Any, id: str) -> int:
    value: int = (await ctx.get("n")) or 0
    ctx.set("n", value + 1)
    await ctx.run_typed("count", step, id=id, name="count", value=0)
    return value + 1


@load.handler()
async def mixed(ctx: Any, req: dict[str, Any]) -> dict[str, Any]:
    id = req["id"]
    a = await ctx.run_typed("step-a", step, id=id, name="a", value=1)
    count = await ctx.object_call(add, key=req["key"], arg=id)
    await ctx.sleep(timedelta(milliseconds=req["sleep_ms"]))
    b = await ctx.run_typed("step-b", step, id=id, name="b", value=2)
    c = await ctx.run_typed("step-c", step, id=id, name="c", value=3)
    return {"id": id, "sum": a + b + c, "count": count}


@load.handler()
async def nap(ctx: Any, req: dict[str, Any]) -> str:
    id: str = req["id"]
    await ctx.sleep(timedelta(milliseconds=req["sleep_ms"]))
    await ctx.run_typed("woke", step, id=id, name="woke", value=0)
    return id


@load.handler()
async def hold(ctx: Any, req: dict[str, Any]) -> str:
    id: str = req["id"]
    await ctx.run_typed(
        "hold", held, id=id, release=req["release"], timeout_s=float(req["timeout_s"])
    )
    return id


@load.handler()
async def live(ctx: Any) -> dict[str, int]:
    gc.collect()
    # The task serving this invocation (and its helpers) would count otherwise; a few stay.
    return {"blocks": sys.getallocatedblocks(), "tasks": len(asyncio.all_tasks())}


app = sdk.app([load, counter])
