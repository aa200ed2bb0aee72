"""Hooks around handler attempts and around the ctx.run closures that really run, behind a
real restate-server (and one that replays the journal at every await): a step hook never
sees a replayed step, an attempt hook sees every attempt, and a hook can change the outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import framework
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

SEEN: list[tuple[str, ...]] = []
RUNS: list[str] = []


class Recorder(framework.Hook):
    def __init__(self, label: str) -> None:
        self.label = label

    async def around_attempt(self, attempt: framework.AttemptInfo, proceed: Any) -> Any:
        SEEN.append((self.label, "attempt", attempt.target, attempt.request.id))
        return await proceed()

    async def around_step(self, step: framework.StepInfo, proceed: Any) -> Any:
        SEEN.append((self.label, "step-in", step.name, str(step.attempt)))
        try:
            return await proceed()
        finally:
            SEEN.append((self.label, "step-out", step.name))


class Doubler(framework.Hook):
    """Changes what a step returns: the hook's result is what gets journaled."""

    async def around_step(self, step: framework.StepInfo, proceed: Any) -> Any:
        value = await proceed()
        return value * 2 if step.name == "doubled" else value


svc = framework.Service("Hooked", hooks=[Recorder("service")])


def _run(name: str, value: int) -> int:
    RUNS.append(name)
    return value


@svc.handler(hooks=[Recorder("handler"), Doubler()])
async def steps(ctx: framework.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{i}", _run, name=f"step-{i}", value=i)
    total += await ctx.run_typed("doubled", _run, name="doubled", value=10)
    return total


@pytest.fixture(params=["default", "always_replay"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(
        framework.app([svc]), always_replay=request.param == "always_replay"
    ) as environment:
        yield environment


async def test_step_hooks_wrap_each_step_once_and_attempt_hooks_each_attempt(
    env: HarnessEnvironment,
) -> None:
    SEEN.clear()
    RUNS.clear()
    assert await env.client.service_call(steps, 3) == 0 + 1 + 2 + 20
    assert RUNS == ["step-0", "step-1", "step-2", "doubled"]
    for label in ("service", "handler"):
        entered = [s[2] for s in SEEN if s[0] == label and s[1] == "step-in"]
        assert entered == RUNS, SEEN  # never around a replayed step
    attempts = [s for s in SEEN if s[1] == "attempt"]
    # One attempt per resume when the server replays at every await, else one.
    services = [s for s in attempts if s[0] == "service"]
    assert len(services) == len([s for s in attempts if s[0] == "handler"])
    assert all(s[2] == "Hooked/steps" for s in attempts)
    assert len({s[3] for s in attempts}) == 1  # the same invocation throughout
    # The service's hook is the outermost: it enters first and leaves last.
    first_step = [s[:2] for s in SEEN if s[1] in ("step-in", "step-out") and s[2] == "step-0"]
    assert first_step == [
        ("service", "step-in"),
        ("handler", "step-in"),
        ("handler", "step-out"),
        ("service", "step-out"),
    ]
