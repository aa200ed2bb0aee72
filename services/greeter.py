"""A stateless service whose handler takes durable steps: each runs once, even on retries."""

import random
from datetime import timedelta

from framework import Context, RunOptions, Service, TerminalError

greeter = Service("Greeter")


async def call_llm(prompt: str) -> str:
    # Stands in for a slow, non-deterministic remote call.
    return f"Hello, {prompt.removeprefix('greet ')}!"


def write_to_other_system() -> None:
    # Stands in for a flaky write; a failure here is retried per the RunOptions below.
    if random.random() < 0.2:
        raise ConnectionError("the other system is down")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    answer = await ctx.run_typed("LLM call", call_llm, prompt=f"greet {name}")
    n = await ctx.run_typed("generate number", lambda: random.randint(0, 10))
    try:
        await ctx.run_typed(
            "write",
            write_to_other_system,
            RunOptions(
                initial_retry_interval=timedelta(milliseconds=100),
                retry_interval_factor=2.0,
                max_retry_interval=timedelta(seconds=10),
                max_duration=timedelta(minutes=5),
                max_attempts=10,
            ),
        )
    except TerminalError:
        answer += " (not recorded)"
    return f"{answer} {n} {ctx.uuid()} {ctx.random().random()} {await ctx.time()}"
