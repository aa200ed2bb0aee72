"""Services the end-to-end tests run behind a real Restate server.

Side effects are counted in files under $FRAMEWORK_TEST_DIR, so a test can tell how many
times a step's closure ran and what every attempt of a handler saw.
"""

from __future__ import annotations

import json
import os
import random
from datetime import timedelta
from pathlib import Path

from framework import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    RetryableError,
    RunOptions,
    Service,
    TerminalError,
    VirtualObject,
    app,
)


def _dir() -> Path:
    path = Path(os.environ.get("FRAMEWORK_TEST_DIR", "/tmp/framework-test"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _append(name: str, line: str) -> int:
    """Append a line to a ledger file; return how many lines it has now."""
    path = _dir() / name
    with path.open("a") as f:
        f.write(line + "\n")
    return len(path.read_text().splitlines())


def make_services(suffix: str) -> list[Service | VirtualObject]:
    greeter = Service(f"Greeter{suffix}")
    steps = Service(f"Steps{suffix}")
    counter = VirtualObject(f"Counter{suffix}")

    async def call_llm(prompt: str) -> str:
        return f"<{prompt}>"

    @greeter.handler()
    async def greet(ctx: Context, name: str) -> str:
        answer = await ctx.run_typed("LLM call", call_llm, prompt=f"greet {name}")
        n = await ctx.run_typed("generate number", lambda: random.randint(0, 10))
        return f"{answer} {n} {ctx.uuid()} {ctx.random().random()} {await ctx.time()}"

    @steps.handler()
    async def once_then_fail_twice(ctx: Context, key: str) -> dict[str, object]:
        """A step that must run once, then a handler that fails on its first two attempts."""

        def side_effect() -> str:
            _append(f"{key}.effects", "ran")
            return "effect done"

        effect = await ctx.run_typed("side effect", side_effect)
        seen = {
            "uuid": str(ctx.uuid()),
            "random": ctx.random().random(),
            "time": await ctx.time(),
        }
        attempt = _append(f"{key}.attempts", json.dumps(seen, sort_keys=True))
        if attempt <= 2:
            raise RuntimeError(f"failing attempt {attempt} on purpose")
        return {"effect": effect, **seen}

    @steps.handler()
    async def exhaust_retries(ctx: Context, key: str) -> str:
        def always_fails() -> None:
            count = _append(f"{key}.tries", "try")
            raise ConnectionError(f"try {count} failed")

        try:
            await ctx.run_typed(
                "always fails",
                always_fails,
                RunOptions(
                    initial_retry_interval=timedelta(milliseconds=10),
                    retry_interval_factor=2.0,
                    max_retry_interval=timedelta(milliseconds=100),
                    max_attempts=3,
                ),
            )
        except TerminalError as error:
            return f"caught: {error.message}"
        return "not caught"

    @steps.handler()
    async def changes_step_names(ctx: Context, key: str) -> str:
        attempt = _append(f"{key}.mismatch", "attempt")
        await ctx.run_typed(f"step-{min(attempt, 2)}", lambda: "x")
        if attempt == 1:
            raise RuntimeError("fail so that the next attempt replays the journal")
        return "unreachable once the names differ"

    @steps.handler()
    async def retry_later(ctx: Context, key: str) -> int:
        attempt = _append(f"{key}.later", "attempt")
        if attempt == 1:
            raise RetryableError("not yet", retry_after=timedelta(milliseconds=700))
        return attempt

    @steps.handler()
    async def nap(ctx: Context, millis: int) -> str:
        await ctx.sleep(timedelta(milliseconds=millis))
        return "rested"

    @steps.handler()
    async def terminal(ctx: Context, message: str) -> str:
        raise TerminalError(message, status_code=418)

    @steps.handler()
    async def request_info(ctx: Context) -> dict[str, object]:
        request = ctx.request()
        return {"id": request.id, "has_headers": bool(request.attempt_headers)}

    @steps.handler()
    async def sync_run_does_not_block(ctx: Context, seconds: float) -> str:
        import time

        def blocking() -> str:
            time.sleep(seconds)
            return "slept"

        return await ctx.run_typed("blocking", blocking)

    @steps.handler()
    async def ctx_inside_run(ctx: Context) -> str:
        async def misuse() -> str:
            await ctx.run_typed("nested", lambda: 1)
            return "nested ran"

        try:
            return await ctx.run_typed("outer", misuse, RunOptions(max_attempts=1))
        except TerminalError as error:
            return error.message

    @counter.handler()
    async def add(ctx: ObjectContext, delta: int) -> int:
        value: int = (await ctx.get("value")) or 0
        ctx.set("value", value + delta)
        return value + delta

    @counter.handler(kind="shared")
    async def get(ctx: ObjectSharedContext) -> int:
        return (await ctx.get("value")) or 0

    @counter.handler()
    async def keys_and_clear(ctx: ObjectContext) -> list[str]:
        ctx.set("other", "x")
        keys = await ctx.state_keys()
        ctx.clear("other")
        after: str | None = await ctx.get("other")
        assert after is None
        return sorted(keys)

    @counter.handler()
    async def reset(ctx: ObjectContext) -> int | None:
        ctx.clear_all()
        return await ctx.get("value")

    return [greeter, steps, counter]


app_v5 = app(make_services("V5"), max_protocol_version=5)
app_v6 = app(make_services("V6"), max_protocol_version=6)
app_v7 = app(make_services("V7"))
app_h1 = app(make_services("H1"), max_protocol_version=6)
