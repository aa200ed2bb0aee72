"""The benchmark handlers, written once and bound to either SDK at import time.

``BENCH_SDK=official`` imports the official ``restate`` SDK, anything else (the default)
this project's ``framework``. ``BENCH_PREFIX`` is put in front of the service names, so both
deployments can be registered on one Restate server (e.g. ``Bench`` and ``OBench``).
"""

from __future__ import annotations

import os
from typing import Any

SDK = os.environ.get("BENCH_SDK", "framework")
PREFIX = os.environ.get("BENCH_PREFIX", "")

sdk: Any
if SDK == "official":
    import restate as sdk
else:
    import framework as sdk

bench = sdk.Service(f"{PREFIX}Bench")
counter = sdk.VirtualObject(f"{PREFIX}BenchCounter")


def step_fn(i: int) -> int:
    """The pure body of one durable step."""
    return i


@bench.handler()
async def noop(ctx: Any, x: int) -> int:
    return x


@bench.handler()
async def steps(ctx: Any, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{i}", step_fn, i=i)
    return total


@counter.handler()
async def add(ctx: Any, delta: int) -> int:
    value: int = (await ctx.get("value")) or 0
    ctx.set("value", value + delta)
    return value + delta


app = sdk.app([bench, counter])
