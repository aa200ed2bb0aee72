"""framework.ext.pydantic: pydantic-ai agents run durably inside Restate handlers.

The agents (tests/ext_pydantic_services.py) run on scripted offline models and log every
model call and tool side effect to a file (``EXT_LOG``); the tests count those lines across
a crash of the service process, always-replay mode, terminal tool failures, a human in the
loop and a session kept in a virtual object's state. The fast tests at the end need no server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from pydantic_ai.exceptions import (
    ApprovalRequired,
    CallDeferred,
    ModelHTTPError,
    ModelRetry,
    ToolFailed,
)
from pydantic_ai.messages import (
    BinaryContent,
    BinaryImage,
    FilePart,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturn,
)
from pydantic_ai.toolsets import FunctionToolset
from pydantic_ai.usage import RequestUsage

from framework import HttpError, TerminalError, create_test_harness
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.ext.pydantic import (
    PydanticTypeAdapter,
    RestateContextRunToolSet,
    RestateModelWrapper,
)
from framework.ext.pydantic._model import as_terminal
from framework.ext.pydantic._serde import MODEL_RESPONSE_SERDE, TOOL_OUTCOME_SERDE, ToolOutcome
from tests import ext_pydantic_services as svc
from tests.waiting import wait_until

APP = "tests.ext_pydantic_services:app"


# --- helpers ----------------------------------------------------------------------------------


def read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def counts(path: Path) -> Counter[str]:
    return Counter(read_log(path))


@pytest.fixture
def ext_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The call log: the child services get it by env=, in-process apps through os.environ."""
    path = tmp_path / "calls.log"
    monkeypatch.setenv("EXT_LOG", str(path))
    return path


@pytest.fixture
def served(
    restate_server: RestateServer, service_process: Any, ext_log: Path
) -> Iterator[tuple[ServiceProcess, httpx.Client]]:
    service = service_process(APP, env={"EXT_LOG": str(ext_log)})
    restate_server.register(service.url)
    with httpx.Client(base_url=restate_server.ingress_url, timeout=60) as ingress:
        yield service, ingress


def send(ingress: httpx.Client, path: str, body: Any) -> str:
    response = ingress.post(f"/{path}/send", json=body)
    response.raise_for_status()
    return str(response.json()["invocationId"])


def attach(ingress: httpx.Client, invocation_id: str) -> httpx.Response:
    return ingress.get(f"/restate/invocation/{invocation_id}/attach")


def journaled_steps(server: RestateServer, invocation_id: str) -> list[str]:
    """The names of the invocation's ctx.run entries, in journal order."""
    rows = server.query(
        f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{invocation_id}' "
        "ORDER BY index"
    )
    return [str(row["name"]) for row in rows if row["entry_type"] == "Command: Run"]


# --- 1. two tools and an answer ---------------------------------------------------------------


def test_an_agent_calls_two_tools_once_each_and_answers(
    served: tuple[ServiceProcess, httpx.Client], restate_server: RestateServer, ext_log: Path
) -> None:
    _, ingress = served
    invocation_id = send(ingress, "PydanticAgents/trip", {"city": "Paris"})
    answer = attach(ingress, invocation_id)
    assert answer.status_code == 200, answer.text
    assert answer.json() == "rain in Paris; umbrella booked in Paris"
    assert counts(ext_log) == Counter(
        {
            "model trip 1 Paris": 1,
            "tool get_weather Paris": 1,
            "tool book_umbrella Paris": 1,
            "model trip 2 Paris": 1,
        }
    )
    # Both tools were asked for in one response: they journal in the model's order.
    assert journaled_steps(restate_server, invocation_id) == [
        "Model call",
        "get_weather",
        "book_umbrella",
        "Model call",
    ]


# --- 2. a crash after the first tool call -----------------------------------------------------


def test_a_service_killed_after_the_first_tool_resumes_without_repeating_anything(
    served: tuple[ServiceProcess, httpx.Client], tmp_path: Path, ext_log: Path
) -> None:
    service, ingress = served
    gate = tmp_path / "gate"
    invocation_id = send(ingress, "PydanticAgents/trip", {"city": "Oslo", "gate": str(gate)})
    # book_umbrella runs (and blocks) only once get_weather's step is journaled.
    wait_until(lambda: "waiting book_umbrella" in read_log(ext_log), "the second tool")
    service.kill()
    service.start()
    gate.touch()
    answer = attach(ingress, invocation_id)
    assert answer.status_code == 200, answer.text
    assert answer.json() == "rain in Oslo; umbrella booked in Oslo"
    seen = counts(ext_log)
    assert seen["model trip 1 Oslo"] == 1, "the journaled model call was asked again"
    assert seen["tool get_weather Oslo"] == 1, "the journaled tool ran again"
    assert seen["tool book_umbrella Oslo"] == 1
    assert seen["model trip 2 Oslo"] == 1
    assert seen["waiting book_umbrella"] >= 2, "the interrupted step did not run again"


# --- 3. always replay ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_always_replay_completes_without_a_journal_mismatch(ext_log: Path) -> None:
    # disable_retries: a journal mismatch (or any failed attempt) fails the call at once.
    async with create_test_harness(svc.app, always_replay=True, disable_retries=True) as env:
        trip = await env.client.service_call(svc.trip, svc.TripRequest(city="Rome"))
        found = await env.client.service_call(svc.find, "the item")
        ordered = await env.client.service_call(svc.ordered, "both")
        walked = await env.client.service_call(svc.walk, "Bern")
    assert trip == "rain in Rome; umbrella booked in Rome"
    assert found == "found item ABC"
    assert ordered == "slow-a fast-b"
    seen = counts(ext_log)
    for line in (
        "model trip 1 Rome",
        "model trip 2 Rome",
        "tool get_weather Rome",
        "tool book_umbrella Rome",
    ):
        assert seen[line] == 1, (line, seen)
    # A ModelRetry is the tool call's journaled outcome: the model sees it, nothing reruns.
    for line in ("model lookup 1", "tool lookup abc", "model lookup 2", "model lookup 3"):
        assert seen[line] == 1, (line, seen)
    assert seen["tool lookup ABC codes are upper case"] == 1
    # iter() is durable too: the same steps, node by node.
    assert walked[-1] == "rain in Bern; umbrella booked in Bern"
    assert walked.count("ModelRequestNode") == 2
    assert seen["model trip 1 Bern"] == 1 and seen["tool get_weather Bern"] == 1


@pytest.mark.anyio
async def test_streaming_and_event_handlers_under_always_replay(ext_log: Path) -> None:
    async with create_test_harness(svc.app, always_replay=True, disable_retries=True) as env:
        output = await env.client.service_call(svc.events, "add")
        events = counts(ext_log)
        ext_log.unlink()
        chunks = await env.client.service_call(svc.streamed, "add")
    assert output == '{"add_numbers":0}'
    # Each event reached the handler once, though every await replayed the run so far.
    assert events["tool add_numbers 0 0"] == 1
    assert events["event function_tool_call"] == 1
    assert events["event function_tool_result"] == 1
    assert events["event final_result"] == 1
    assert events["event part_start"] == 2  # the tool call's part, then the text's
    assert chunks and chunks[-1] == '{"add_numbers":0}'
    assert counts(ext_log)["tool add_numbers 0 0"] == 1


# --- 4. a tool fails for good -------------------------------------------------------------------


def test_a_terminal_error_in_a_tool_fails_the_run_without_asking_the_model_again(
    served: tuple[ServiceProcess, httpx.Client], ext_log: Path
) -> None:
    _, ingress = served
    answer = ingress.post("/PydanticAgents/charge", json="ann")
    assert answer.status_code == 402, answer.text
    assert "card declined for 1250 cents" in answer.text
    time.sleep(0.5)  # a retry, were there one, would have asked the model again by now
    assert counts(ext_log) == Counter({"model charge 1": 1, "tool charge_card 1250": 1})


# --- 5. a human in the loop --------------------------------------------------------------------


async def _awakeable_id(ext_log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in read_log(ext_log):
            if line.startswith("awakeable "):
                return line.split(" ", 1)[1]
        await asyncio.sleep(0.05)
    raise AssertionError("the tool never published its awakeable")


@pytest.mark.anyio
async def test_a_tool_waits_for_a_human_and_gives_up_after_its_timeout(ext_log: Path) -> None:
    async with create_test_harness(svc.app, always_replay=True, disable_retries=True) as env:
        request = svc.ApprovalRequest(question="ship it?", timeout_s=60)
        handle = await env.client.service_send(svc.approve, request)
        await env.client.resolve_awakeable(await _awakeable_id(ext_log), "yes")
        assert await handle.attach() == "human: answered yes"
        assert counts(ext_log)["model approval 1"] == 1
        assert counts(ext_log)["model approval 2"] == 1
        ext_log.unlink()

        request = svc.ApprovalRequest(question="anyone?", timeout_s=0.5)
        assert await env.client.service_call(svc.approve, request) == "human: no answer in time"


@pytest.mark.anyio
async def test_cancelling_a_waiting_tool_fails_the_run_instead_of_answering_the_model(
    ext_log: Path,
) -> None:
    async with create_test_harness(svc.app, always_replay=True) as env:
        request = svc.ApprovalRequest(question="wait", timeout_s=60)
        handle = await env.client.service_send(svc.approve, request)
        await _awakeable_id(ext_log)
        await env.cancel_invocation(handle.invocation_id)
        with pytest.raises(HttpError) as failed:
            await handle.attach()
    assert failed.value.status_code == 409
    # The cancellation surfaced in the tool; it did not become a tool result for the model.
    assert counts(ext_log)["model approval 2"] == 0


# --- 6. a session on a virtual object -----------------------------------------------------------


def test_a_session_keeps_its_conversation_per_key(
    served: tuple[ServiceProcess, httpx.Client], ext_log: Path
) -> None:
    _, ingress = served
    key = f"alice-{time.time_ns()}"

    def chat(who: str, message: str) -> Any:
        answer = ingress.post(f"/PydanticSession/{who}/chat", json=message)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert chat(key, "hi") == "turn 1: hi"
    assert chat(key, "again") == "turn 2: hi | again"
    assert chat(f"bob-{time.time_ns()}", "hello") == "turn 1: hello"


# --- tool order -----------------------------------------------------------------------------------


def test_tools_called_together_journal_in_the_models_order_on_every_run(
    served: tuple[ServiceProcess, httpx.Client], restate_server: RestateServer
) -> None:
    # slow_lookup sleeps before its own step: run concurrently it would journal second.
    _, ingress = served
    for _ in range(2):
        invocation_id = send(ingress, "PydanticAgents/ordered", "both")
        answer = attach(ingress, invocation_id)
        assert answer.json() == "slow-a fast-b", answer.text
        assert journaled_steps(restate_server, invocation_id) == [
            "Model call",
            "slow step",
            "fast step",
            "Model call",
        ]


# --- no server ------------------------------------------------------------------------------------


class Point(BaseModel):
    x: int
    y: int


@pytest.mark.fast
def test_pydantic_type_adapter_round_trips_through_json_bytes() -> None:
    serde = PydanticTypeAdapter(list[Point])
    data = serde.serialize([Point(x=1, y=2)])
    assert data == b'[{"x":1,"y":2}]'
    assert serde.deserialize(data) == [Point(x=1, y=2)]
    assert serde.serialize(None) == b"" and serde.deserialize(b"") is None
    history = PydanticTypeAdapter(ModelMessagesTypeAdapter)
    messages: list[ModelMessage] = [ModelResponse(parts=[TextPart("hi")])]
    assert history.deserialize(history.serialize(messages)) == messages


@pytest.mark.fast
def test_a_model_response_replays_exactly_as_the_model_gave_it() -> None:
    response = ModelResponse(
        parts=[
            TextPart("thinking done"),
            ToolCallPart("lookup", {"code": "A"}, tool_call_id="call_1"),
            FilePart(BinaryImage(b"\x89PNG\x00\xff", media_type="image/png")),
        ],
        usage=RequestUsage(input_tokens=7, output_tokens=3),
        model_name="scripted",
        timestamp=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        provider_response_id="resp_9",
    )
    assert MODEL_RESPONSE_SERDE.deserialize(MODEL_RESPONSE_SERDE.serialize(response)) == response


@pytest.mark.fast
@pytest.mark.parametrize(
    "signal",
    [
        ModelRetry("again"),
        ToolFailed("gone"),
        CallDeferred({"ticket": 1}, kind="question"),
        ApprovalRequired({"why": "money"}),
    ],
    ids=lambda signal: type(signal).__name__,
)
def test_a_tools_answer_to_pydantic_ai_is_journaled_and_raised_again(signal: Exception) -> None:
    outcome = ToolOutcome.of_signal(signal)
    assert outcome is not None
    replayed = TOOL_OUTCOME_SERDE.deserialize(TOOL_OUTCOME_SERDE.serialize(outcome))
    assert replayed is not None
    with pytest.raises(type(signal)) as raised:
        replayed.unwrap()
    assert vars(raised.value) == vars(signal)


@pytest.mark.fast
def test_tool_results_replay_as_their_json_form_with_binary_content_intact() -> None:
    image = BinaryContent(b"\x00\x01", media_type="image/png")
    for result in ["text", 3, {"a": [1, None]}, ToolReturn("v", content="seen", metadata={"m": 1})]:
        outcome = TOOL_OUTCOME_SERDE.serialize(ToolOutcome.of_result(result))
        replayed = TOOL_OUTCOME_SERDE.deserialize(outcome)
        assert replayed is not None and replayed.unwrap() == result
    replayed = TOOL_OUTCOME_SERDE.deserialize(
        TOOL_OUTCOME_SERDE.serialize(ToolOutcome.of_result([image]))
    )
    assert replayed is not None and replayed.unwrap()[0].data == b"\x00\x01"
    assert ToolOutcome.of_signal(ValueError("boom")) is None


@pytest.mark.fast
def test_only_model_errors_no_retry_can_fix_become_terminal() -> None:
    refused = as_terminal(ModelHTTPError(401, "m", {"error": "bad key"}))
    assert isinstance(refused, TerminalError) and refused.status_code == 401
    for status in (408, 429, 500, 503):
        assert as_terminal(ModelHTTPError(status, "m")) is None
    assert as_terminal(ConnectionError("reset")) is None


@pytest.mark.fast
def test_the_agent_swaps_in_durable_models_and_toolsets() -> None:
    agent = svc.durable_trip
    assert isinstance(agent.model, RestateModelWrapper)
    assert agent.toolsets and all(isinstance(t, RestateContextRunToolSet) for t in agent.toolsets)
    unwrapped = svc.durable_order
    assert not any(isinstance(t, RestateContextRunToolSet) for t in unwrapped.toolsets)
    toolset: RestateContextRunToolSet[None] = RestateContextRunToolSet(FunctionToolset())
    assert isinstance(toolset.visit_and_replace(lambda t: t), RestateContextRunToolSet)


@pytest.mark.fast
@pytest.mark.anyio
async def test_an_agent_run_outside_a_handler_says_where_to_run_it() -> None:
    with pytest.raises(RuntimeError, match="from inside a handler"):
        await svc.durable_trip.run("Paris")


@pytest.mark.fast
def test_the_ways_to_run_that_cannot_be_durable_say_what_to_use() -> None:
    with pytest.raises(TypeError, match=r"await agent\.run"):
        svc.durable_trip.run_sync("Paris")
    with pytest.raises(TypeError, match="event_stream_handler"):
        svc.durable_trip.run_stream_events("Paris")


@pytest.mark.fast
def test_a_missing_pydantic_ai_names_the_extra_to_install() -> None:
    from framework.ext._common import require

    with pytest.raises(ImportError, match=r"pip install 'framework\[pydantic-ai\]'"):
        require("pydantic_ai_missing_for_test", "pydantic-ai", "framework.ext.pydantic")
