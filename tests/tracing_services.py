"""Services whose spans (OpenTelemetry SDK, in this process) go to a JSON-lines file."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import framework
from framework import Context, getLogger

SPANS = Path(os.environ.get("FRAMEWORK_TEST_DIR", ".")) / "spans.jsonl"


class FileExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with SPANS.open("a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "trace_id": f"{context.trace_id:032x}",
                            "span_id": f"{context.span_id:016x}",
                            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                            "attributes": dict(span.attributes or {}),
                            "status": span.status.status_code.name,
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)

logger = getLogger("tracing-test")
logger.setLevel(logging.INFO)

svc = framework.Service("Traced")


@svc.handler()
async def leaf(ctx: Context, n: int) -> int:
    return n + 1


def add_one(n: int) -> int:
    with trace.get_tracer("user").start_as_current_span("inside the step"):
        return n + 1


@svc.handler()
async def root(ctx: Context, n: int) -> int:
    logger.info("root handling %d", n)
    stepped = await ctx.run_typed("add one", add_one, n=n)
    return await ctx.service_call(leaf, stepped)


app = framework.app([svc])
