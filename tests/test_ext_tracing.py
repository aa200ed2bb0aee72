"""framework.ext.tracing: behind a real restate-server that replays the journal at every
await, spans started through RestateTracer are exported once per invocation, while a plain
tracer exports the replayed ones again on every resume."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import framework
from framework.ext.tracing import RestateTracer, RestateTracerProvider
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
WRAPPED = RestateTracerProvider(_PROVIDER).get_tracer("tests.wrapped")
PLAIN = _PROVIDER.get_tracer("tests.plain")

traced = framework.Service("TracedAgent")


def _identity(value: int) -> int:
    return value


@traced.handler()
async def turns(ctx: framework.Context, n: int) -> int:
    total = 0
    for i in range(n):
        with WRAPPED.start_as_current_span(f"wrapped-turn-{i}"):
            total += await ctx.run_typed(f"step-{i}", _identity, value=i)
        PLAIN.start_span(f"plain-turn-{i}").end()
        WRAPPED.start_span(f"wrapped-start-{i}").end()
    return total


@pytest.fixture
async def replaying_env() -> AsyncIterator[HarnessEnvironment]:
    async with create_test_harness(framework.app([traced]), always_replay=True) as env:
        yield env


async def test_wrapped_spans_are_exported_once_per_invocation(
    replaying_env: HarnessEnvironment,
) -> None:
    EXPORTER.clear()
    assert await replaying_env.client.service_call(turns, 3) == 0 + 1 + 2
    names = Counter(span.name for span in EXPORTER.get_finished_spans())
    for i in range(3):
        assert names[f"wrapped-turn-{i}"] == 1, names
        assert names[f"wrapped-start-{i}"] == 1, names
    # The plain tracer's span of the first turn was exported on every resume after it.
    assert names["plain-turn-0"] > 1, names


def test_the_wrapper_keeps_the_tracer_interface() -> None:
    span = RestateTracer(PLAIN).start_span("outside-a-handler")
    assert span.is_recording()  # outside a handler nothing replays
    span.end()
