"""The app ``tests/test_streams.py`` serves: invocations that stay in flight on a durable sleep.

``Streams/hold`` runs one durable step (a digest of its input), then sleeps for a second and
answers something derived from both, so each invocation needs two answers from the runtime
(the step's stored result, then the fired timer) before it can finish. ``Streams/quick``
answers at once: the probe a second connection sends while the others are held.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import framework
from framework import Context, Service

streams = Service("Streams")


def digest_of(n: int) -> str:
    """What the durable step computes (the test computes it too, to check the answer)."""
    return hashlib.sha256(f"stream-{n}".encode()).hexdigest()[:16]


def expected_output(n: int) -> dict[str, object]:
    """What ``hold({"n": n})`` answers."""
    return {"n": n, "square": n * n, "digest": digest_of(n)}


@streams.handler()
async def hold(ctx: Context, request: dict[str, int]) -> dict[str, object]:
    n = request["n"]
    digest = await ctx.run_typed("digest", lambda: digest_of(n))
    await ctx.sleep(timedelta(seconds=1))
    return {"n": n, "square": n * n, "digest": digest}


@streams.handler()
async def quick(ctx: Context, n: int) -> int:
    return n + 1


app = framework.app([streams])
