"""framework.ext.langchain: LangChain agents whose model and tool calls are durable steps.

The agents and their scripted offline models are in tests/ext_langchain_services.py; each
model call and tool side effect is a line in the file ``EXT_LOG`` names, so the tests count
them across process restarts and replays. Behind a real restate-server: two tools and an
answer (the tool steps in the model's order), a SIGKILL between tool calls, every await
replayed (the harness's always_replay), a tool's TerminalError, a person answering (or not)
through an awakeable, sessions on a virtual object, and the model's transient and permanent
errors. Without a server: the journal's encoding and the refusal of synchronous runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Command
from pydantic import BaseModel

from framework import TerminalError
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.ext.langchain._failures import cannot_succeed
from framework.ext.langchain._journal import (
    JournalEncodingError,
    ModelResponseSerde,
    ToolResultSerde,
)
from framework.testing import HarnessEnvironment, create_test_harness
from tests import ext_langchain_services as svc
from tests.waiting import wait_until

APP = "tests.ext_langchain_services:app"
TIMEOUT = 60.0


def log_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def model_calls(path: Path, label: str) -> list[str]:
    return [line for line in log_lines(path) if line.startswith(f"model {label} ")]


@dataclass
class Agents:
    """A service process serving the agents, registered, and the file its calls go to."""

    server: RestateServer
    service: ServiceProcess
    log: Path

    def send(self, target: str, body: Any) -> str:
        response = httpx.post(
            f"{self.server.ingress_url}/{target}/send", json=body, timeout=TIMEOUT
        )
        response.raise_for_status()
        invocation_id: str = response.json()["invocationId"]
        return invocation_id

    def attach(self, invocation_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.server.ingress_url}/restate/invocation/{invocation_id}/attach",
            timeout=TIMEOUT,
        )

    def call(self, target: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.server.ingress_url}/{target}", json=body, timeout=TIMEOUT)

    def steps(self, invocation_id: str) -> list[str]:
        """The names of the invocation's ``ctx.run`` steps, in journal order."""
        rows = self.server.query(
            "SELECT index, entry_type, name FROM sys_journal "
            f"WHERE id = '{invocation_id}' ORDER BY index"
        )
        return [row["name"] for row in rows if row["entry_type"] == "Command: Run"]


@pytest.fixture
def agents(
    restate_server: RestateServer,
    service_process: Callable[..., ServiceProcess],
    tmp_path: Path,
) -> Iterator[Agents]:
    log = tmp_path / "calls.log"
    service = service_process(APP, env={svc.LOG_ENV: str(log)})
    restate_server.register(service.url)
    yield Agents(restate_server, service, log)


# -- behind a real server -----------------------------------------------------------------------


def test_two_tools_then_an_answer_each_once_in_the_models_order(agents: Agents) -> None:
    invocation_id = agents.send("LangchainAgent/travel", "Paris")
    response = agents.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json()["answer"] == "done: sunny in Paris; visit to Paris recorded"
    assert model_calls(agents.log, "travel") == ["model travel 0", "model travel 1"]
    tools = [line for line in log_lines(agents.log) if line.startswith("tool ")]
    first_ai_id = response.json()["ai_ids"][0]
    assert sorted(tools) == ["tool get_weather Paris", f"tool record_visit Paris {first_ai_id}"]
    # get_weather reached the middleware 0.3 s after record_visit, yet its step came first.
    assert agents.steps(invocation_id) == [
        "model call",
        "get_weather",
        "record_visit",
        "model call",
    ]


def test_a_killed_service_resumes_without_repeating_model_or_tool_calls(agents: Agents) -> None:
    invocation_id = agents.send("LangchainAgent/errands", "laundry")
    wait_until(
        lambda: any(line.startswith("started second_errand") for line in log_lines(agents.log)),
        "the second tool to start",
        timeout=TIMEOUT,
    )
    agents.service.kill()
    (agents.log.parent / "release").touch()
    agents.service.start()

    response = agents.attach(invocation_id)
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["answer"] == "done: second half of laundry done"
    assert model_calls(agents.log, "errands") == [
        "model errands 0",
        "model errands 1",
        "model errands 2",
    ]
    lines = log_lines(agents.log)
    assert lines.count("tool first_errand laundry") == 1
    assert lines.count("tool second_errand laundry") == 1
    # The tool ran before and after the kill; both times it saw the AIMessage that asked for
    # it with the same id, the second time rebuilt from the journal.
    started = [line for line in lines if line.startswith("started second_errand")]
    assert started == [f"started second_errand laundry {outcome['ai_ids'][1]}"] * 2
    assert agents.steps(invocation_id) == [
        "model call",
        "first_errand",
        "model call",
        "second_errand",
        "model call",
    ]


def test_a_tools_terminal_error_fails_the_run_without_asking_the_model_again(
    agents: Agents,
) -> None:
    response = agents.call("LangchainAgent/forbidden", "the vault")
    assert response.status_code == 403, response.text
    assert "refused: the vault" in response.text
    assert model_calls(agents.log, "forbidden") == ["model forbidden 0"]
    assert log_lines(agents.log).count("tool refuse the vault") == 1


def test_a_person_answers_through_an_awakeable_or_the_tool_times_out(agents: Agents) -> None:
    answered = agents.send("LangchainAgent/approval", {"question": "ship?", "timeout_s": 60})
    unanswered = agents.send("LangchainAgent/approval", {"question": "paint?", "timeout_s": 1})

    def awakeable_for(question: str) -> str | None:
        for line in log_lines(agents.log):
            words = line.split()
            if words[0] == "awakeable" and words[2] == question:
                return words[1]
        return None

    awakeable_id = wait_until(lambda: awakeable_for("ship?"), "the question", timeout=TIMEOUT)
    resolved = httpx.post(
        f"{agents.server.ingress_url}/restate/awakeables/{awakeable_id}/resolve",
        json="yes, ship it",
        timeout=TIMEOUT,
    )
    assert resolved.status_code in (200, 202), resolved.text

    first, second = agents.attach(answered), agents.attach(unanswered)
    assert first.status_code == 200, first.text
    assert first.json()["answer"] == "done: human said: yes, ship it"
    assert second.status_code == 200, second.text
    assert second.json()["answer"] == "done: no answer in time"
    assert len(model_calls(agents.log, "approval")) == 4  # two turns each
    assert sum(line.startswith("awakeable ") for line in log_lines(agents.log)) == 2


def test_cancelling_a_waiting_agent_fails_it_instead_of_feeding_the_model(
    agents: Agents,
) -> None:
    invocation_id = agents.send("LangchainAgent/approval", {"question": "wait?", "timeout_s": 60})
    wait_until(
        lambda: any(line.startswith("awakeable ") for line in log_lines(agents.log)),
        "the question",
        timeout=TIMEOUT,
    )
    agents.server.admin.cancel_invocation(invocation_id)
    response = agents.attach(invocation_id)
    assert response.status_code == 409, response.text
    assert model_calls(agents.log, "approval") == ["model approval 0"]


def test_a_session_keeps_its_conversation_per_key(agents: Agents) -> None:
    def chat(key: str, message: str) -> dict[str, Any]:
        response = agents.call(f"LangchainSession/{key}/chat", message)
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        return reply

    assert chat("alice", "hello") == {"reply": "you said hello; before that: nothing", "kept": 2}
    assert chat("alice", "how are you") == {
        "reply": "you said how are you; before that: hello",
        "kept": 4,
    }
    assert chat("bob", "hi") == {"reply": "you said hi; before that: nothing", "kept": 2}
    assert len(model_calls(agents.log, "session")) == 3


def test_model_errors_are_retried_unless_they_cannot_succeed(agents: Agents) -> None:
    transient = agents.call("LangchainAgent/flaky", 503)
    assert transient.status_code == 200, transient.text
    assert transient.json()["answer"] == "answer to 503"
    assert model_calls(agents.log, "flaky") == ["model flaky 0 error 503", "model flaky 0"]

    permanent = agents.call("LangchainAgent/flaky", 401)
    assert permanent.status_code == 500, permanent.text
    assert "would fail again" in permanent.text and "provider answered 401" in permanent.text
    assert model_calls(agents.log, "flaky")[2:] == ["model flaky 0 error 401"]


# -- every await replayed -----------------------------------------------------------------------


@pytest.fixture
async def replaying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[HarnessEnvironment, Path]]:
    log = tmp_path / "calls.log"
    monkeypatch.setenv(svc.LOG_ENV, str(log))  # the harness serves the app in this process
    (tmp_path / "release").touch()
    async with create_test_harness(svc.app, always_replay=True) as env:
        yield env, log


async def _no_failed_attempts(env: HarnessEnvironment, invocation_id: str) -> None:
    row = await env.invocation(invocation_id)
    assert row is not None
    assert row["completion_result"] == "success", row
    assert row["last_failure"] is None, row


@pytest.mark.anyio
async def test_every_await_replayed_without_a_journal_mismatch(
    replaying: tuple[HarnessEnvironment, Path],
) -> None:
    env, log = replaying

    travel = await env.client.service_send(svc.travel, "Paris")
    assert (await travel.attach())["answer"] == "done: sunny in Paris; visit to Paris recorded"
    await _no_failed_attempts(env, travel.invocation_id)

    errands = await env.client.service_send(svc.errands, "dishes")
    assert (await errands.attach())["answer"] == "done: second half of dishes done"
    await _no_failed_attempts(env, errands.invocation_id)

    forecast = await env.client.service_send(svc.forecast, "Oslo")
    assert await forecast.attach() == {"type": "Forecast", "city": "Oslo", "sky": "clear"}
    await _no_failed_attempts(env, forecast.invocation_id)

    approval = await env.client.service_send(svc.approval, {"question": "go?", "timeout_s": 60})

    def published() -> str | None:
        found = [line.split()[1] for line in log_lines(log) if line.startswith("awakeable ")]
        return found[0] if found else None

    import anyio

    with anyio.fail_after(TIMEOUT):
        while (awakeable_id := published()) is None:
            await anyio.sleep(0.05)
    await env.client.resolve_awakeable(awakeable_id, "go")
    assert (await approval.attach())["answer"] == "done: human said: go"
    await _no_failed_attempts(env, approval.invocation_id)

    first = await env.client.object_call(svc.chat, "carol", "one")
    second = await env.client.object_call(svc.chat, "carol", "two")
    assert (first["kept"], second["reply"]) == (2, "you said two; before that: one")

    lines = log_lines(log)
    for label, turns in [("travel", 2), ("errands", 3), ("forecast", 1), ("approval", 2)]:
        assert model_calls(log, label) == [f"model {label} {turn}" for turn in range(turns)]
    assert len(model_calls(log, "session")) == 2
    for effect in [
        "tool get_weather Paris",
        "tool first_errand dishes",
        "tool second_errand dishes",
    ]:
        assert lines.count(effect) == 1, lines
    assert sum(line.startswith("tool record_visit Paris") for line in lines) == 1
    assert sum(line.startswith("awakeable ") for line in lines) == 1


# -- without a server ---------------------------------------------------------------------------


class Verdict(BaseModel):
    ok: bool
    reason: str


@pytest.mark.fast
def test_a_model_response_comes_back_from_the_journal_exactly() -> None:
    from langchain.agents.middleware import ModelResponse
    from langchain.agents.structured_output import ToolStrategy

    message = AIMessage(
        content=[{"type": "text", "text": "thinking"}],
        id="lc_run--1234",
        name="agent",
        tool_calls=[{"name": "lookup", "args": {"q": "x", "n": [1, 2]}, "id": "call_9"}],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        response_metadata={"model_name": "scripted", "finish_reason": "tool_calls"},
        additional_kwargs={"refusal": None},
    )
    tool_message = ToolMessage("Returning structured response", tool_call_id="call_9", id="t1")
    response = ModelResponse(
        result=[message, tool_message], structured_response=Verdict(ok=True, reason="fine")
    )
    serde = ModelResponseSerde(ToolStrategy(Verdict))
    back = serde.deserialize(serde.serialize(response))
    assert back is not None
    assert back.result == [message, tool_message]
    assert back.result[0].id == "lc_run--1234"
    assert isinstance(back.result[0], AIMessage) and back.result[0].tool_calls[0]["id"] == "call_9"
    assert back.structured_response == Verdict(ok=True, reason="fine")

    plain = ModelResponse(result=[message], structured_response={"ok": True})
    assert ModelResponseSerde(None).deserialize(ModelResponseSerde(None).serialize(plain)) == plain


@pytest.mark.fast
def test_tool_results_come_back_from_the_journal_exactly() -> None:
    serde = ToolResultSerde()
    message = ToolMessage(
        "boom", tool_call_id="call_1", name="t", status="error", artifact={"raw": [1]}
    )
    assert serde.deserialize(serde.serialize(message)) == message
    command = Command(update={"messages": [message], "counter": 3}, goto="model")
    back = serde.deserialize(serde.serialize(command))
    assert isinstance(back, Command)
    assert back.update == {"messages": [message], "counter": 3}
    assert back.goto == "model"
    with pytest.raises(JournalEncodingError, match="cannot be journaled"):
        serde.serialize(ToolMessage(content="x", tool_call_id="c", artifact=object()))
    assert issubclass(JournalEncodingError, TerminalError)  # recorded, not retried


@pytest.mark.fast
def test_which_model_errors_cannot_succeed() -> None:
    for status in (400, 401, 403, 404, 422):
        assert cannot_succeed(svc.ProviderError("no", status))
    for status in (408, 409, 429, 500, 503):
        assert not cannot_succeed(svc.ProviderError("later", status))
    assert cannot_succeed(NotImplementedError("bind_tools"))
    assert not cannot_succeed(ConnectionError("reset"))
    response = httpx.Response(401, request=httpx.Request("POST", "http://model"))
    assert cannot_succeed(httpx.HTTPStatusError("401", request=response.request, response=response))


@pytest.mark.fast
def test_a_synchronous_run_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(TerminalError, match="ainvoke"):
        svc.travel_agent.invoke({"messages": [HumanMessage("Paris")]})


@pytest.mark.fast
def test_outside_a_handler_the_middleware_says_where_to_run_the_agent() -> None:
    import asyncio

    with pytest.raises(RuntimeError, match="no Restate handler"):
        asyncio.run(svc.travel_agent.ainvoke({"messages": [HumanMessage("Paris")]}))


@pytest.mark.fast
def test_importing_the_module_without_langchain_names_the_extra() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['langchain'] = None; "
        "import framework.ext.langchain"  # the import must fail, naming the extra
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "pip install 'framework[langchain]'" in result.stderr
