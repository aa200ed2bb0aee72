"""OpenTelemetry tracers for code inside handlers (agent libraries, your own spans) that emit
each span once per invocation, not once per replay.

A handler's code runs again on every retry and resume, up to the point where the journal
ends; spans it starts there would be exported again each time, describing work that did not
happen again. Wrapped by ``RestateTracerProvider`` (or ``RestateTracer``), a tracer hands out
non-recording spans while the handler replays, and real ones (children of the invocation's
span when there is one) once it runs new code::

    provider = RestateTracerProvider(opentelemetry.trace.get_tracer_provider())
    tracer = provider.get_tracer("my-agent")

Needs opentelemetry-api: ``pip install 'framework[tracing]'``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from framework._api.extensions import restate_context_is_replaying
from framework.ext._common import require

require("opentelemetry.trace", "tracing", "framework.ext.tracing")

from opentelemetry import trace  # noqa: E402
from opentelemetry.context import Context  # noqa: E402
from opentelemetry.trace import Link, Span, SpanKind, Tracer, TracerProvider  # noqa: E402
from opentelemetry.util.types import AttributeValue  # noqa: E402

__all__ = ["RestateTracer", "RestateTracerProvider"]


def _replay_span(context: Context | None) -> Span:
    """A span that records nothing, in the trace of the would-be parent."""
    parent = trace.get_current_span(context).get_span_context()
    return trace.NonRecordingSpan(parent)


class RestateTracer(Tracer):
    """A tracer whose spans record nothing while the running handler replays."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if restate_context_is_replaying.get():
            return _replay_span(context)
        return self._tracer.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        if restate_context_is_replaying.get():
            with trace.use_span(_replay_span(context), end_on_exit=False) as span:
                yield span
            return
        with self._tracer.start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


class RestateTracerProvider(TracerProvider):
    """Hands out ``RestateTracer``s over the tracers of ``provider``."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> Tracer:
        return RestateTracer(self._provider.get_tracer(*args, **kwargs))
