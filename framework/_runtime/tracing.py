"""W3C trace context: handler spans continue the caller's trace, and so do outgoing calls.

The trace context comes from the attempt headers (set when the Restate server traces) or
else from the invocation's own headers (what the original caller sent to the ingress).
With ``opentelemetry-api`` installed (``pip install 'framework[otel]'``) every handler
attempt gets a SERVER span and every executed ``ctx.run`` a child span, both current while
user code runs, so instrumented libraries nest under them. Without it, the incoming
``traceparent`` is still forwarded on calls and tagged on log records.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Mapping
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT_FORMAT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

try:
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - depends on the environment
    _trace = None  # type: ignore[assignment]

# The trace context carried by the invocation running in this task (headers to forward).
_incoming: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "framework_trace_context", default=None
)


def incoming_trace_context(
    attempt_headers: Mapping[str, str], invocation_headers: Mapping[str, str]
) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of this invocation, if any and well formed."""
    for headers in (attempt_headers, invocation_headers):
        parent = headers.get(TRACEPARENT)
        if parent is not None and _TRACEPARENT_FORMAT.match(parent.strip().lower()):
            carrier = {TRACEPARENT: parent.strip().lower()}
            state = headers.get(TRACESTATE)
            if state:
                carrier[TRACESTATE] = state
            return carrier
    return {}


@contextlib.contextmanager
def handler_span(
    target: str, invocation_id: str, retry_count: int, carrier: dict[str, str]
) -> Iterator[None]:
    """The span of one attempt of a handler (a no-op without OpenTelemetry)."""
    token = _incoming.set(carrier)
    try:
        tracer = _active_tracer()
        if tracer is None:
            yield
            return
        attributes = {
            "restate.invocation.id": invocation_id,
            "restate.invocation.target": target,
            "restate.invocation.retry_count": retry_count,
        }
        parent = _propagate.extract(carrier) if carrier else None
        with _span(tracer, target, context=parent, kind=SpanKind.SERVER, attributes=attributes):
            yield
    finally:
        _incoming.reset(token)


@contextlib.contextmanager
def run_span(name: str) -> Iterator[None]:
    """The span of one execution of a ``ctx.run`` closure (never of a replayed one)."""
    tracer = _active_tracer()
    if tracer is None:
        yield
        return
    with _span(tracer, f"run {name}", attributes={"restate.run.name": name}):
        yield


@contextlib.contextmanager
def _span(tracer: Any, name: str, **options: Any) -> Iterator[None]:
    """A current span that records a failure our way (TerminalError is not an error)."""
    with tracer.start_as_current_span(
        name, record_exception=False, set_status_on_exception=False, **options
    ) as span:
        try:
            yield
        except BaseException as error:
            _record_failure(span, error)
            raise


def _active_tracer() -> Any:
    """Our tracer, or None while no TracerProvider is installed (spans would go nowhere,
    and even no-op spans cost microseconds per step)."""
    if _trace is None:
        return None
    provider = _trace.get_tracer_provider()
    if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("framework")


def _record_failure(span: Any, error: BaseException) -> None:
    if isinstance(error, Exception):
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def outgoing_trace_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """``headers`` for a call made by the handler, with the trace context added (unless the
    caller set one): the current span's with OpenTelemetry, else the incoming one."""
    if headers is not None and TRACEPARENT in headers:
        return headers
    carrier: dict[str, str] = {}
    if _trace is not None and _trace.get_current_span().get_span_context().is_valid:
        _propagate.inject(carrier)
    else:
        carrier = dict(_incoming.get() or {})
    if not carrier:
        return headers
    return {**carrier, **(headers or {})}


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the running handler, for log records."""
    if _trace is not None:
        context = _trace.get_current_span().get_span_context()
        if context.is_valid:
            return f"{context.trace_id:032x}"
    carrier = _incoming.get()
    if carrier:
        match = _TRACEPARENT_FORMAT.match(carrier[TRACEPARENT])
        if match:
            return match.group(1)
    return None


__all__ = [
    "current_trace_id",
    "handler_span",
    "incoming_trace_context",
    "outgoing_trace_headers",
    "run_span",
]
