"""Services for the bad-input and security tests (tests/test_bad_input.py, tests/test_security.py).

Every handler call is appended to ``LEDGER`` (in-process) and, when ``$FRAMEWORK_TEST_DIR``
is set, to ``$FRAMEWORK_TEST_DIR/ledger.log`` (child processes): a test can then tell
whether a request reached user code at all.

- ``app``: the services with the default maximum message size.
- ``small_app``: the same services with ``max_message_size=SMALL_MAX_MESSAGE_SIZE``.
- ``signed_app``: the same services, trusting ``$FRAMEWORK_TEST_IDENTITY_KEY`` only.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from framework import Context, ObjectContext, Service, VirtualObject
from framework import app as make_app

SMALL_MAX_MESSAGE_SIZE = 64 * 1024

LEDGER: list[str] = []


def record(call: str) -> None:
    """Note that user code ran (in this process, and in the ledger file if configured)."""
    LEDGER.append(call)
    directory = os.environ.get("FRAMEWORK_TEST_DIR")
    if directory:
        with (Path(directory) / "ledger.log").open("a") as f:
            f.write(call + "\n")


bad = Service("BadInput")


@bad.handler()
async def echo(ctx: Context, value: str) -> str:
    record("echo")
    return value


async def _ran() -> str:
    return "ran"


@bad.handler()
async def step(ctx: Context) -> str:
    record("step")
    return await ctx.run_typed("step", _ran)


@bad.handler()
async def nap(ctx: Context) -> str:
    record("nap")
    await ctx.sleep(timedelta(hours=1))
    return "woke"


@bad.handler()
async def count(ctx: Context, items: list[Any]) -> int:
    """Takes a big JSON list and answers its length."""
    record("count")
    return len(items)


@bad.handler()
async def fail(ctx: Context, value: str) -> str:
    """Fails every attempt with an error that does not repeat its input."""
    record("fail")
    raise RuntimeError("the handler failed on purpose")


store = VirtualObject("BadInputStore")


@store.handler()
async def read(ctx: ObjectContext) -> str | None:
    record("read")
    return await ctx.get("k")


@store.handler()
async def write(ctx: ObjectContext, value: str) -> None:
    record("write")
    ctx.set("k", value)


@store.handler()
async def keys(ctx: ObjectContext) -> list[str]:
    record("keys")
    return sorted(await ctx.state_keys())


SERVICES: list[Service | VirtualObject] = [bad, store]

app = make_app(SERVICES)
small_app = make_app(SERVICES, max_message_size=SMALL_MAX_MESSAGE_SIZE)


def __getattr__(name: str) -> Any:
    # Built on first use: it needs the key from the environment.
    if name == "signed_app":
        return make_app(SERVICES, identity_keys=[os.environ["FRAMEWORK_TEST_IDENTITY_KEY"]])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
