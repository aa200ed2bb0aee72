"""Ids and timestamps ADK makes for events, sessions and function calls, made the same on
every attempt of an invocation.

ADK asks its ``google.adk.platform`` providers for every new id and every timestamp. Left
to ``uuid4``/``time.time``, a retried attempt would build events that differ from the ones
the first attempt stored in the VirtualObject's state. Here the id provider draws from a
generator seeded by the invocation id, and the clock starts at a journaled ``ctx.time()``
and moves on only by what the journal says (the time each model step finished), plus a
microsecond a reading so that events stay ordered.
"""

from __future__ import annotations

import random
import time
import uuid

from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid

from framework._api.context import Context
from framework._api.extensions import current_context, get_extension_data, set_extension_data

_KEY = "framework.ext.adk"
_TICK = 1e-6


class AttemptClock:
    """This attempt's id generator and clock (kept as the attempt's extension data)."""

    __slots__ = ("_ids", "now")

    def __init__(self, seed: str) -> None:
        self._ids = random.Random(seed)
        self.now: float | None = None

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def read(self) -> float | None:
        if self.now is None:
            return None
        self.now += _TICK
        return self.now

    def advance(self, to: float) -> None:
        self.now = to if self.now is None else max(self.now, to)


def attempt_clock(ctx: Context) -> AttemptClock:
    clock = get_extension_data(ctx, _KEY)
    if not isinstance(clock, AttemptClock):
        # The invocation id is the one seed every attempt of this invocation shares.
        clock = AttemptClock(f"{_KEY}:{ctx.request().id}")
        set_extension_data(ctx, _KEY, clock)
    return clock


def _new_id() -> str:
    ctx = current_context()
    if ctx is None:
        return str(uuid.uuid4())
    return attempt_clock(ctx).new_id()


def _now() -> float:
    ctx = current_context()
    if ctx is not None:
        reading = attempt_clock(ctx).read()
        if reading is not None:
            return reading
    return time.time()


async def make_deterministic(ctx: Context) -> AttemptClock:
    """Route ADK's ids and clock through this attempt (in the running task's context, which
    the tasks ADK starts later inherit); journal the clock's start once per attempt."""
    platform_uuid.set_id_provider(_new_id)
    platform_time.set_time_provider(_now)
    clock = attempt_clock(ctx)
    if clock.now is None:
        clock.advance(await ctx.time())
    return clock
