"""Trace context through a real Restate server: the caller's traceparent continues in the
handler's span, in the spans of its ctx.run steps (and what they do), in the handler it
calls, and in its log records."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework._runtime.tracing import incoming_trace_context, outgoing_trace_headers

ROOT = Path(__file__).resolve().parents[1]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_trace_context_parsing() -> None:
    assert incoming_trace_context({}, {"traceparent": TRACEPARENT, "tracestate": "a=1"}) == {
        "traceparent": TRACEPARENT,
        "tracestate": "a=1",
    }
    server_side = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert (
        incoming_trace_context({"traceparent": server_side}, {"traceparent": TRACEPARENT})[
            "traceparent"
        ]
        == server_side
    )
    assert incoming_trace_context({}, {"traceparent": "garbage"}) == {}
    # An explicit traceparent on a call is kept as is.
    assert outgoing_trace_headers({"traceparent": "mine"}) == {"traceparent": "mine"}


def _spans(path: Path, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            spans = [json.loads(line) for line in path.read_text().splitlines()]
            if len(spans) >= count:
                return spans
        time.sleep(0.1)
    raise AssertionError(f"expected {count} spans, got {spans}")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_spans_continue_the_callers_trace(
    restate_server: RestateServer, tmp_path: Path, log_format: str
) -> None:
    service = ServiceProcess(
        "tests.tracing_services:app",
        log_path=tmp_path / "service.log",
        cwd=ROOT,
        env={"FRAMEWORK_TEST_DIR": str(tmp_path), "FRAMEWORK_LOG_FORMAT": log_format},
    )
    with service:
        restate_server.register(service.url, force=True)
        answer = httpx.post(
            f"{restate_server.ingress_url}/Traced/root",
            json=41,
            headers={"traceparent": TRACEPARENT},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json() == 43
        spans = _spans(tmp_path / "spans.jsonl", 4)
    by_name = {span["name"]: span for span in spans}
    root, step = by_name["Traced/root"], by_name["run add one"]
    inner, leaf = by_name["inside the step"], by_name["Traced/leaf"]
    assert {s["trace_id"] for s in spans} == {TRACE_ID}
    assert root["parent_id"] == PARENT_ID  # the caller's span
    assert step["parent_id"] == root["span_id"]
    assert inner["parent_id"] == step["span_id"]  # user spans nest under the step
    assert root["attributes"]["restate.invocation.target"] == "Traced/root"
    assert root["attributes"]["restate.invocation.id"].startswith("inv_")
    assert leaf["attributes"]["restate.invocation.target"] == "Traced/leaf"
    log = service.log_text()
    line = next(line for line in log.splitlines() if "root handling 41" in line)
    if log_format == "json":
        record = json.loads(line)
        assert record["trace_id"] == TRACE_ID
        assert record["invocation_id"] == root["attributes"]["restate.invocation.id"]
        assert record["restate_target"] == "Traced/root" and record["level"] == "INFO"
    else:
        assert root["attributes"]["restate.invocation.id"] in line
