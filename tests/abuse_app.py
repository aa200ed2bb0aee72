"""The service tests/test_abuse.py serves while attacking it: one trivial handler.

``Abuse/echo(n)`` answers ``n + 1`` without a single durable step, so the well-behaved
client's prepared journal (Start + Input) is answered straight away with Output + End, and
every answer can be checked against the number that was sent.
"""

from __future__ import annotations

from framework import Context, Service, app

abuse = Service("Abuse")


@abuse.handler()
async def echo(ctx: Context, n: int) -> int:
    return n + 1


application = app([abuse])
