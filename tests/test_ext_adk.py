"""framework.ext.adk: Google ADK agents under RestatePlugin, against a real restate-server.

The agents (tests/ext_adk_services.py) run a scripted offline model; every model call and
tool side effect is a line in the ``EXT_LOG`` file, so the tests count them across process
restarts and replays:

- two tools and an answer: the model called twice, each side effect once, the journal in
  the model's order;
- the service SIGKILLed while the first tool holds the run: the model call already made is
  not made again, no side effect twice;
- always-replay (the harness suspends at every await): same answers, no journal mismatch,
  and the session the agent stored is the one its replayed attempt computed (ADK's ids and
  timestamps are deterministic);
- a tool raising TerminalError fails the invocation with it, without another model call;
  a provider's 400 fails it too, a 503 is retried;
- a tool waiting for a human on an awakeable, with a timeout;
- a conversation per VirtualObject key (RestateSessionService);
- a durable event summary (RestateEventSummarizer);
plus fast checks of the journaled model turn's serde and the response merging.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.adk.apps import App
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types

from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.ext.adk import RestatePlugin
from framework.ext.adk._determinism import AttemptClock
from framework.ext.adk._model_step import (
    TURN_SERDE,
    ModelTurn,
    is_permanent,
    merge_responses,
    name_function_calls,
)
from framework.testing import create_test_harness
from tests import ext_adk_services as services
from tests.waiting import wait_until

SERVICES = "tests.ext_adk_services:app"
_JSON = {"content-type": "application/json"}
ServiceFactory = Callable[..., ServiceProcess]


def _lines(log: Path) -> list[str]:
    try:
        return log.read_text().splitlines()
    except FileNotFoundError:
        return []


def _counts(log: Path) -> Counter[str]:
    """Log lines without the per-process call number: ``model shop``, ``tool reserve apple``."""
    counts: Counter[str] = Counter()
    for line in _lines(log):
        words = line.split()
        counts[" ".join(words[:2]) if words[0] == "model" else line] += 1
    return counts


@dataclass
class Deployment:
    server: RestateServer
    service: ServiceProcess
    log: Path
    gate: Path
    http: httpx.Client

    def call(self, target: str, body: Any = None) -> httpx.Response:
        """POST a JSON body (none at all for a handler without input)."""
        if body is None:
            return self.http.post(f"/{target}")
        return self.http.post(f"/{target}", content=json.dumps(body), headers=_JSON)

    def send(self, target: str, body: Any) -> str:
        response = self.http.post(f"/{target}/send", content=json.dumps(body), headers=_JSON)
        assert response.status_code in (200, 202), response.text
        invocation_id: str = response.json()["invocationId"]
        return invocation_id

    def attach(self, invocation_id: str) -> httpx.Response:
        return self.http.get(f"/restate/invocation/{invocation_id}/attach")

    def journal(self, invocation_id: str) -> list[dict[str, Any]]:
        return self.server.query(
            f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{invocation_id}' "
            "ORDER BY index"
        )


@pytest.fixture
def deployment(
    restate_server: RestateServer, service_process: ServiceFactory, tmp_path: Path
) -> Iterator[Deployment]:
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    service = service_process(SERVICES, env={"EXT_LOG": str(log), "EXT_GATE": str(gate)})
    restate_server.register(service.url)
    gate.touch()  # open unless a test closes it
    with httpx.Client(base_url=restate_server.ingress_url, timeout=60, trust_env=False) as http:
        yield Deployment(restate_server, service, log, gate, http)


SHOP_ANSWER = "done: reserve=['reserve-apple'], charge=['charge-5']"


def _step_names(journal: list[dict[str, Any]]) -> list[str]:
    """The names of the run steps, in journal order (each step once: its command)."""
    return [
        str(entry["name"])
        for entry in journal
        if entry["name"]
        and "Run" in str(entry["entry_type"])
        and "Notification" not in str(entry["entry_type"])
    ]


# -- 1. two tools and an answer --------------------------------------------------------------------


def test_agent_calls_two_tools_and_answers(deployment: Deployment) -> None:
    invocation_id = deployment.send("AdkAgent/shop", "buy an apple and pay for it")
    response = deployment.attach(invocation_id)

    assert response.status_code == 200, response.text
    assert response.json() == SHOP_ANSWER
    assert _counts(deployment.log) == {
        "model shop": 2,
        "tool reserve apple": 1,
        "tool charge 5": 1,
    }
    # The two calls of one model response journal their steps in the model's order.
    assert _step_names(deployment.journal(invocation_id)) == [
        "time",
        "call LLM (shop_agent)",
        "reserve",
        "charge",
        "call LLM (shop_agent)",
    ]


# -- 2. killed mid-run -----------------------------------------------------------------------------


def test_killed_after_the_first_tool_resumes_without_repeating(deployment: Deployment) -> None:
    deployment.gate.unlink()  # the reserve tool holds the run after its step
    invocation_id = deployment.send("AdkAgent/shop", "buy an apple and pay for it")

    wait_until(lambda: "tool reserve apple" in _lines(deployment.log), "the reservation")
    wait_until(
        lambda: "reserve" in _step_names(deployment.journal(invocation_id)),
        "the reservation step in the journal",
    )
    deployment.service.kill()
    assert _counts(deployment.log) == {"model shop": 1, "tool reserve apple": 1}
    deployment.gate.touch()
    deployment.service.start()

    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == SHOP_ANSWER
    # The first model call came from the journal after the restart; only the second ran.
    assert _counts(deployment.log) == {
        "model shop": 2,
        "tool reserve apple": 1,
        "tool charge 5": 1,
    }


# -- 3. always replay ------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_always_replay_completes_without_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EXT_LOG", str(log))
    monkeypatch.delenv("EXT_GATE", raising=False)
    async with create_test_harness(services.app, always_replay=True) as env:
        assert await env.client.service_call(services.shop, "buy") == SHOP_ANSWER
        assert await env.client.object_call(services.chat, "ann", "hello") == "seen: hello"
        described = await env.client.object_call(services.chat_and_describe, "ann", "again")
        assert await env.client.service_call(services.summarize, ["a", "b"]) == (
            "summary of the conversation"
        )
        stored = await env.query(
            "SELECT key, value_utf8 FROM state WHERE service_name = 'AdkChat' "
            "AND service_key = 'ann'"
        )

    assert described["answer"] == "seen: hello | again"
    assert _counts(log) == {
        "model shop": 2,
        "tool reserve apple": 1,
        "tool charge 5": 1,
        "model history": 2,
        "model summary": 1,
    }
    # What the server stored came from the first attempt of each step; what the last,
    # fully replayed attempt computed must be the same ids and timestamps.
    events = [
        json.loads(row["value_utf8"]) for row in stored if row["key"].startswith("adk:event:")
    ]
    assert sorted((e["id"], e["timestamp"]) for e in events) == sorted(
        (e["id"], e["timestamp"]) for e in described["events"]
    )
    assert len(events) == 4  # two user messages, two answers
    timestamps = [e["timestamp"] for e in described["events"]]
    assert timestamps == sorted(timestamps)


# -- 4. terminal errors ----------------------------------------------------------------------------


def test_tool_terminal_error_fails_the_invocation(deployment: Deployment) -> None:
    response = deployment.call("AdkAgent/refuse_order", "refund everything")

    assert response.status_code == 422, response.text
    assert "refused: policy" in response.text
    assert _counts(deployment.log) == {"model refuser": 1}


def test_other_tool_errors_reach_the_model(deployment: Deployment) -> None:
    response = deployment.call("AdkAgent/find_order", "where is order 42?")

    assert response.status_code == 200, response.text
    assert response.json() == "done: look_up_order=['ValueError: no order 42']"
    assert _counts(deployment.log) == {"model fumbler": 2}


def test_permanent_model_error_fails_the_invocation(deployment: Deployment) -> None:
    response = deployment.call("AdkAgent/broken", "hello")

    assert response.status_code == 500, response.text
    assert "refused the request" in response.text and "malformed" in response.text
    assert _counts(deployment.log) == {"model broken": 1}


def test_retryable_model_error_is_retried(deployment: Deployment) -> None:
    response = deployment.call("AdkAgent/flaky", "hello")

    assert response.status_code == 200, response.text
    # The agent's after-model callback ran on the journaled response.
    assert response.json() == "answered after a retry (checked)"
    assert _counts(deployment.log) == {"model flaky": 2}


# -- 5. human in the loop --------------------------------------------------------------------------


def _awakeable_ids(log: Path) -> list[str]:
    return [line.split()[1] for line in _lines(log) if line.startswith("awakeable ")]


def test_human_approves_through_an_awakeable(deployment: Deployment) -> None:
    invocation_id = deployment.send("AdkAgent/approval", 120)
    [awakeable_id] = wait_until(lambda: _awakeable_ids(deployment.log), "the approval request")

    resolved = deployment.http.post(
        f"/restate/awakeables/{awakeable_id}/resolve", content=json.dumps("approved"), headers=_JSON
    )
    assert resolved.status_code in (200, 202), resolved.text
    response = deployment.attach(invocation_id)

    assert response.status_code == 200, response.text
    assert response.json() == "done: ask_approval=['approved']"
    assert _counts(deployment.log) == {"model approver": 2, f"awakeable {awakeable_id}": 1}


def test_human_approval_times_out(deployment: Deployment) -> None:
    response = deployment.call("AdkAgent/approval", 1.0)

    assert response.status_code == 200, response.text
    assert response.json() == "done: ask_approval=['no answer in time']"
    assert len(_awakeable_ids(deployment.log)) == 1


# -- 6. a conversation per object key --------------------------------------------------------------


def test_session_history_is_kept_per_object_key(deployment: Deployment) -> None:
    def chat(key: str, message: str) -> Any:
        response = deployment.call(f"AdkChat/{key}/chat", message)
        assert response.status_code == 200, response.text
        return response.json()

    assert chat("alice", "hello") == "seen: hello"
    assert chat("alice", "how are you") == "seen: hello | how are you"
    assert chat("bob", "hi") == "seen: hi"

    keys = {
        row["key"]
        for row in deployment.server.query(
            "SELECT key FROM state WHERE service_name = 'AdkChat' AND service_key = 'alice'"
        )
    }
    assert "adk:session:alice" in keys
    assert len([key for key in keys if key.startswith("adk:event:alice:")]) == 4

    forgotten = deployment.call("AdkChat/alice/forget")
    assert forgotten.json() == {"had": True, "listed": ["alice"], "has": False}
    assert chat("alice", "hello again") == "seen: hello again"
    assert chat("bob", "still there?") == "seen: hi | still there?"
    assert _counts(deployment.log) == {"model history": 5}


# -- fast: the journaled turn and the response merging ---------------------------------------------


@pytest.mark.fast
def test_model_turn_round_trips_through_the_journal_serde() -> None:
    call = types.FunctionCall(name="reserve", args={"item": "apple"})
    response = LlmResponse(
        content=types.Content(
            role="model",
            parts=[
                types.Part(function_call=call, thought_signature=b"\x00\xffsignature"),
                types.Part(inline_data=types.Blob(data=b"\x89PNG", mime_type="image/png")),
                types.Part(text="here"),
            ],
        ),
        usage_metadata=types.GenerateContentResponseUsageMetadata(prompt_token_count=7),
        finish_reason=types.FinishReason.STOP,
    )
    [call_id] = name_function_calls(response)
    turn = ModelTurn(response=response, at=1_800_000_000.25)

    restored = TURN_SERDE.deserialize(TURN_SERDE.serialize(turn))

    assert restored == turn
    assert restored is not None and restored.response.content is not None
    assert call_id.startswith("adk-")
    assert restored.response.content.parts[0].function_call.id == call_id  # type: ignore[index, union-attr]
    assert TURN_SERDE.deserialize(TURN_SERDE.serialize(None)) is None


def _chunk(text: str, *, partial: bool) -> LlmResponse:
    return LlmResponse(
        content=types.Content(role="model", parts=[types.Part(text=text)]), partial=partial
    )


@pytest.mark.fast
def test_streamed_chunks_become_one_response() -> None:
    only_partials = merge_responses([_chunk("Hel", partial=True), _chunk("lo", partial=True)])
    assert only_partials.partial is None
    assert only_partials.content is not None
    assert [p.text for p in only_partials.content.parts or []] == ["Hello"]

    # A complete response wins over the partial chunks that preceded it.
    final = merge_responses([_chunk("Hel", partial=True), _chunk("Hello", partial=False)])
    assert final.content is not None
    assert [p.text for p in final.content.parts or []] == ["Hello"]
    assert merge_responses([]) == LlmResponse()


class _StatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code


@pytest.mark.fast
@pytest.mark.anyio
async def test_the_plugin_outside_a_handler_says_so() -> None:
    runner = Runner(
        app=App(name="outside", root_agent=services.agent("shop", []), plugins=[RestatePlugin()]),
        session_service=InMemorySessionService(),
        auto_create_session=True,
    )
    message = types.Content(role="user", parts=[types.Part(text="hello")])
    with pytest.raises(RuntimeError) as raised:
        async for _ in runner.run_async(user_id="u", session_id="s", new_message=message):
            pass
    assert "no Restate handler is running here" in str(raised.value.__cause__)


@pytest.mark.fast
def test_which_provider_errors_are_permanent() -> None:
    assert is_permanent(_StatusError(400)) and is_permanent(_StatusError(401))
    assert not is_permanent(_StatusError(429)) and not is_permanent(_StatusError(503))
    assert not is_permanent(ConnectionError("reset")) and is_permanent(TypeError("bad"))


@pytest.mark.fast
def test_attempt_clock_is_the_same_for_the_same_invocation() -> None:
    first, second = AttemptClock("inv_1"), AttemptClock("inv_1")
    assert [first.new_id() for _ in range(3)] == [second.new_id() for _ in range(3)]
    assert AttemptClock("inv_2").new_id() != AttemptClock("inv_1").new_id()
    assert first.read() is None
    first.advance(100.0)
    readings = [first.read(), first.read()]
    first.advance(50.0)  # the clock never goes back
    assert readings[0] is not None and readings[1] is not None
    assert 100.0 < readings[0] < readings[1] < (first.read() or 0) < 100.1
