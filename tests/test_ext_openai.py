"""framework.ext.openai against a real restate-server: OpenAI Agents SDK agents whose model
calls and tools are durable steps (services in tests/ext_openai_services.py, scripted models,
no network).

The service processes log every model request and tool side effect to ``calls.log``; the
tests compare those counts with what the scripts need, across a SIGKILL and restart, in
always-replay mode, with a failing tool, a human in the loop and a session per object key.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents import Agent, ModelResponse, RunConfig, RunContextWrapper, Usage, function_tool
from agents.run_config import ToolExecutionConfig
from agents.tool import default_tool_error_function
from openai.types.responses import ResponseOutputMessage, ResponseReasoningItem
from openai.types.responses.response_reasoning_item import Summary

from framework import RunOptions, TerminalError
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.ext.openai import (
    durable_function_tool,
    propagate_cancellation,
    raise_terminal_errors,
)
from framework.ext.openai._model import AgentModelRouter, DurableModel, DurableModelProvider
from framework.ext.openai._runner import _failure_of, durable_run_config
from framework.ext.openai._serde import RoundTripSerde
from tests.ext_openai_services import ScriptedModel, call, chat_script, say
from tests.waiting import wait_until

SERVICES = "tests.ext_openai_services:application"
ServiceFactory = Callable[..., ServiceProcess]


def calls(log: Path) -> list[list[str]]:
    """The logged calls, split into words, without the trailing pid."""
    if not log.exists():
        return []
    return [line.split()[:-1] for line in log.read_text().splitlines() if line]


def counted(log: Path, *prefix: str) -> int:
    return sum(1 for words in calls(log) if tuple(words[: len(prefix)]) == prefix)


class Deployment:
    """One served, registered copy of the services and an ingress client."""

    def __init__(self, server: RestateServer, service: ServiceProcess, log: Path) -> None:
        self.server = server
        self.service = service
        self.log = log
        self.http = httpx.Client(base_url=server.ingress_url, timeout=90, trust_env=False)

    def post(self, path: str, body: Any) -> httpx.Response:
        if body is None:  # a handler without input takes no body
            return self.http.post(path)
        return self.http.post(
            path, content=json.dumps(body), headers={"content-type": "application/json"}
        )

    def call(self, path: str, body: Any) -> Any:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def send(self, path: str, body: Any) -> str:
        response = self.post(f"{path}/send", body)
        assert response.status_code in (200, 202), response.text
        invocation_id: str = response.json()["invocationId"]
        return invocation_id

    def attach(self, invocation_id: str) -> httpx.Response:
        return self.http.get(f"/restate/invocation/{invocation_id}/attach")

    def journal(self, invocation_id: str) -> list[dict[str, Any]]:
        return self.server.query(
            "SELECT index, entry_type, name FROM sys_journal "
            f"WHERE id = '{invocation_id}' ORDER BY index"
        )


@pytest.fixture
def deployment(
    restate_server: RestateServer, service_process: ServiceFactory, tmp_path: Path
) -> Iterator[Deployment]:
    log = tmp_path / "calls.log"
    service = service_process(SERVICES, env={"EXT_LOG": str(log)})
    restate_server.register(service.url)
    deployed = Deployment(restate_server, service, log)
    try:
        yield deployed
    finally:
        deployed.http.close()


def step_names(journal: list[dict[str, Any]]) -> list[str]:
    return [str(row["name"]) for row in journal if row["entry_type"] == "Command: Run"]


def test_two_tools_and_an_answer(deployment: Deployment) -> None:
    # Turn 1 asks for add and multiply at once, turn 2 for a note, turn 3 answers.
    invocation_id = deployment.send("/OpenAIAgents/two_tools", "compute")
    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == "sum=5 product=20 note=text='sum 5' length=5"
    log = deployment.log
    assert counted(log, "model", "two_tools") == 3
    assert counted(log, "tool", "add") == 1
    assert counted(log, "tool", "multiply") == 1
    assert counted(log, "tool", "note") == 1
    # The parallel calls are journaled in the model's order (add first, though it is the
    # slower one), each step under its tool's name.
    assert step_names(deployment.journal(invocation_id)) == [
        "model response",
        "add",
        "multiply",
        "model response",
        "take_note",
        "model response",
    ]


def test_parallel_tool_calls_are_journaled_in_the_models_order(deployment: Deployment) -> None:
    invocation_id = deployment.send("/OpenAIAgents/parallel", "both")
    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == "a logged / b logged"
    # One call's steps after the other's, in the order the model listed the calls.
    assert step_names(deployment.journal(invocation_id)) == [
        "model response",
        "a first",
        "a second",
        "b first",
        "b second",
        "model response",
    ]


def test_killed_after_the_first_tool_resumes_without_repeating(
    deployment: Deployment, tmp_path: Path
) -> None:
    log = deployment.log
    invocation_id = deployment.send("/OpenAIAgents/crash", "work")
    # The first tool's step is done and the second model response journaled once the second
    # tool has started (it waits for the release marker).
    wait_until(lambda: counted(log, "tool", "blocking-start") == 1, "the blocking step")
    assert counted(log, "tool", "add") == 1
    assert counted(log, "model", "crash") == 2
    deployment.service.kill()
    (tmp_path / "release").touch()
    deployment.service.start()
    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == "finished: 2, second done"
    # Only the step that was running when the process died ran again; both model responses
    # journaled before the kill came from the journal.
    assert counted(log, "model", "crash") == 3
    assert counted(log, "tool", "add") == 1
    assert counted(log, "tool", "blocking-start") == 2
    assert counted(log, "tool", "blocking-done") == 1
    pids = {line.split()[-1] for line in log.read_text().splitlines()}
    assert len(pids) == 2, "the invocation finished in the restarted process"


def test_terminal_error_in_a_tool_fails_the_run(deployment: Deployment) -> None:
    invocation_id = deployment.send("/OpenAIAgents/terminal_tool", "go")
    response = deployment.attach(invocation_id)
    assert response.status_code == 422, response.text
    assert "tool gave up: no fuel" in response.text
    assert counted(deployment.log, "model", "explode") == 1
    assert counted(deployment.log, "tool", "explode") == 1
    rows = deployment.server.query(
        f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'"
    )
    assert rows == [{"status": "completed"}]


def test_human_in_the_loop_answers(deployment: Deployment) -> None:
    invocation_id = deployment.send("/OpenAIAgents/human", 120)

    def awakeable() -> str | None:
        found = [words[1] for words in calls(deployment.log) if words[0] == "awakeable"]
        return found[0] if found else None

    awakeable_id = wait_until(awakeable, "the tool to publish its awakeable")
    resolved = deployment.post(f"/restate/awakeables/{awakeable_id}/resolve", "yes")
    assert resolved.status_code in (200, 202), resolved.text
    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == "verdict: the human said yes"
    assert counted(deployment.log, "model", "human") == 2


def test_human_in_the_loop_times_out(deployment: Deployment) -> None:
    assert deployment.call("/OpenAIAgents/human", 0.5) == "verdict: no answer in time"
    assert counted(deployment.log, "awakeable") == 1
    assert counted(deployment.log, "model", "human") == 2


def test_session_keeps_history_per_object_key(deployment: Deployment) -> None:
    def chat(key: str, message: str) -> Any:
        return deployment.call(f"/OpenAIChat/{key}/chat", message)

    assert chat("ann", "hello") == "1 messages; first: hello; last: hello"
    assert chat("ann", "again") == "2 messages; first: hello; last: again"
    assert chat("bob", "hi") == "1 messages; first: hi; last: hi"
    history = deployment.call("/OpenAIChat/ann/history", None)
    roles = [(item.get("role"), item.get("type")) for item in history]
    assert roles == [("user", None), ("assistant", "message")] * 2
    assert counted(deployment.log, "model", "chat") == 3


def test_always_replay_completes_without_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from framework.testing import create_test_harness
    from tests import ext_openai_services as services

    log = tmp_path / "calls.log"
    monkeypatch.setenv("EXT_LOG", str(log))

    async def scenario() -> None:
        async with create_test_harness(services.application, always_replay=True) as env:
            answer = await env.client.service_call(services.two_tools, "compute")
            assert answer == "sum=5 product=20 note=text='sum 5' length=5"
            both = await env.client.service_call(services.parallel, "both")
            assert both == "a logged / b logged"
            timed_out = await env.client.service_call(services.human, 0.2)
            assert timed_out == "verdict: no answer in time"
            first = await env.client.object_call(services.chat, "k", "one")
            second = await env.client.object_call(services.chat, "k", "two")
            assert (first, second) == (
                "1 messages; first: one; last: one",
                "2 messages; first: one; last: two",
            )

    asyncio.run(scenario())
    counts = Counter(tuple(words[:2]) for words in calls(log))
    assert counts[("model", "two_tools")] == 3
    assert counts[("model", "chat")] == 2
    assert counts[("model", "parallel")] == counts[("model", "human")] == 2
    assert counts[("tool", "step")] == 4
    assert counts[("tool", "add")] == counts[("tool", "multiply")] == counts[("tool", "note")] == 1


def test_human_in_the_loop_cancelled_fails_the_run(deployment: Deployment) -> None:
    invocation_id = deployment.send("/OpenAIAgents/human", 300)
    wait_until(lambda: counted(deployment.log, "awakeable") == 1, "the published awakeable")
    cancelled = httpx.patch(
        f"{deployment.server.admin_url}/invocations/{invocation_id}/cancel", timeout=10
    )
    assert cancelled.status_code in (200, 202), cancelled.text
    response = deployment.attach(invocation_id)
    # The tool's TerminalError(409) unwinds the run instead of becoming a tool result.
    assert response.status_code == 409, response.text
    assert counted(deployment.log, "model", "human") == 1


def test_handoff_between_agents_with_their_own_models(deployment: Deployment) -> None:
    invocation_id = deployment.send("/OpenAIAgents/handoff", "route me")
    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == "specialist: done (route me)"
    assert counted(deployment.log, "model", "triage") == 1
    assert counted(deployment.log, "model", "specialist") == 1
    assert step_names(deployment.journal(invocation_id)) == ["model response"] * 2


def test_streamed_nested_run_is_journaled_as_one_response(deployment: Deployment) -> None:
    invocation_id = deployment.send("/OpenAIAgents/streamed_helper", "go")
    response = deployment.attach(invocation_id)
    assert response.status_code == 200, response.text
    assert response.json() == "helper said: streamed (help me)"
    assert counted(deployment.log, "model-stream", "helper") == 1
    assert step_names(deployment.journal(invocation_id)) == [
        "model response",
        "model response (streamed)",
        "model response",
    ]


def test_a_failing_model_call_is_retried(deployment: Deployment) -> None:
    assert deployment.call("/OpenAIAgents/flaky_model", "again") == "recovered (again)"
    assert counted(deployment.log, "model", "flaky", "failing") == 1
    assert counted(deployment.log, "model", "flaky") == 2


def test_a_rejected_model_request_fails_for_good(deployment: Deployment) -> None:
    response = deployment.post("/OpenAIAgents/rejected_model", "hello")
    assert response.status_code == 500, response.text
    assert "refused the request (HTTP 400)" in response.text
    # A 400 is not retried: one request, then the invocation failed for good.
    assert counted(deployment.log, "model", "rejected") == 1


# -- without a server ----------------------------------------------------------------------------

fast = pytest.mark.fast


@fast
def test_model_responses_round_trip_through_the_journal_serde() -> None:
    serde = RoundTripSerde(ModelResponse)
    reasoning = ResponseReasoningItem(
        id="rs_1", type="reasoning", summary=[Summary(type="summary_text", text="thinking")]
    )
    original = ModelResponse(
        output=[reasoning, call("add", "c1", '{"a": 1}'), say("hi")],
        usage=Usage(requests=1, input_tokens=7, output_tokens=3, total_tokens=10),
        response_id="resp_1",
        request_id="req_1",
    )
    decoded = serde.deserialize(serde.serialize(original))
    assert decoded == original
    assert decoded is not None
    # The same fields set, so the next turn's model input is the same as the first run's.
    assert decoded.to_input_items() == original.to_input_items()
    assert [type(item) for item in decoded.output] == [type(item) for item in original.output]
    assert serde.deserialize(b"") is None and serde.serialize(None) == b""


@fast
def test_a_response_that_would_not_decode_is_refused_when_journaled() -> None:
    broken = ResponseOutputMessage.model_construct(
        id="m", type="message", role="nobody", status="completed", content=[]
    )
    serde = RoundTripSerde(ModelResponse)
    with pytest.raises(TerminalError, match="cannot be journaled"):
        serde.serialize(ModelResponse(output=[broken], usage=Usage(), response_id=None))


class _CancelledWrapper(Exception):
    """How the agents library hands a tool's asyncio cancellation to a failure handler."""

    def __init__(self) -> None:
        super().__init__("cancelled")
        self.cancelled_error = asyncio.CancelledError()


@fast
def test_raise_terminal_errors() -> None:
    context = RunContextWrapper(context=None)
    with pytest.raises(TerminalError, match="stop"):
        raise_terminal_errors(context, TerminalError("stop", status_code=400))
    with pytest.raises(asyncio.CancelledError):
        raise_terminal_errors(context, _CancelledWrapper())
    error = ValueError("bad input")
    assert raise_terminal_errors(context, error) == default_tool_error_function(context, error)


@fast
def test_propagate_cancellation() -> None:
    context = RunContextWrapper(context=None)
    seen: list[Exception] = []

    def mine(ctx: RunContextWrapper[Any], error: Exception) -> str:
        seen.append(error)
        return f"mine: {error}"

    handler = propagate_cancellation(mine)
    with pytest.raises(TerminalError):
        handler(context, TerminalError("cancelled", status_code=409))
    with pytest.raises(asyncio.CancelledError):
        handler(context, _CancelledWrapper())
    # Everything else, a TerminalError of another status included, is the delegate's.
    assert handler(context, TerminalError("nope", status_code=500)) == "mine: nope"
    assert handler(context, KeyError("k")) == "mine: 'k'"
    assert len(seen) == 2
    default = propagate_cancellation()
    assert default(context, ValueError("x")) == default_tool_error_function(
        context, ValueError("x")
    )


def _sample(city: str, days: int = 3) -> str:
    """Forecast the weather.

    Args:
        city: Where.
        days: How many days ahead.
    """
    return f"{city} {days}"


def _with_context(ctx: RunContextWrapper[Any], text: str) -> str:
    """Echo."""
    return text


@fast
def test_durable_tools_have_function_tool_schemas_and_defaults() -> None:
    taking_context = durable_function_tool(_with_context)
    assert taking_context.params_json_schema == function_tool(_with_context).params_json_schema
    plain = function_tool(_sample)
    durable = durable_function_tool(_sample)
    assert (durable.name, durable.description) == (plain.name, plain.description)
    assert durable.params_json_schema == plain.params_json_schema
    assert durable.strict_json_schema is plain.strict_json_schema is True
    renamed = durable_function_tool(name_override="forecast", strict_mode=False)(_sample)
    assert renamed.name == "forecast" and renamed.strict_json_schema is False
    # The shared parameters default as in agents.function_tool, but for the failure handler.
    ours = inspect.signature(durable_function_tool).parameters
    theirs = inspect.signature(function_tool).parameters
    for name, parameter in ours.items():
        if name != "failure_error_function":
            assert parameter.default == theirs[name].default, name
            assert parameter.kind == theirs[name].kind, name
    assert ours["failure_error_function"].default is raise_terminal_errors
    with pytest.raises(TypeError, match="takes a function"):
        durable_function_tool(functools.partial(_sample, "Oslo"))


@fast
def test_the_durable_run_config() -> None:
    model = ScriptedModel("unit", chat_script)
    routed = durable_run_config(RunConfig(), None, "inv_1")
    again = durable_run_config(RunConfig(), None, "inv_1")
    assert isinstance(routed.model, AgentModelRouter)
    assert isinstance(routed.model_provider, DurableModelProvider)
    assert routed.call_model_input_filter is not None
    # The trace id is the SDK's format and the same on every attempt of the invocation.
    assert routed.trace_id == again.trace_id
    assert routed.trace_id is not None and len(routed.trace_id) == len("trace_") + 32
    assert durable_run_config(RunConfig(), None, "inv_2").trace_id != routed.trace_id
    assert routed.tool_execution is not None
    assert routed.tool_execution.max_function_tool_concurrency == 1

    options = RunOptions[Any](max_attempts=2)
    given = RunConfig(
        model=model,
        trace_id="trace_mine",
        tool_execution=ToolExecutionConfig(
            max_function_tool_concurrency=8, pre_approval_tool_input_guardrails=True
        ),
    )
    wrapped = durable_run_config(given, options, "inv_1")
    assert isinstance(wrapped.model, DurableModel) and wrapped.model.inner is model
    assert wrapped.trace_id == "trace_mine" and wrapped.call_model_input_filter is None
    assert wrapped.tool_execution is not None
    assert wrapped.tool_execution.max_function_tool_concurrency == 1
    assert wrapped.tool_execution.pre_approval_tool_input_guardrails is True
    assert given.model is model, "the caller's config is left as it was"
    assert durable_run_config(RunConfig(model="gpt-x"), None, "inv").model == "gpt-x"
    # Runner-level retries are vetoed: the step retried already.
    advice = wrapped.model.get_retry_advice(None)  # type: ignore[arg-type]
    assert advice is not None and advice.normalized is not None
    assert advice.normalized.is_abort is True


@fast
def test_how_a_failed_run_fails_the_invocation() -> None:
    from agents import MaxTurnsExceeded, UserError

    terminal = TerminalError("for good", status_code=422)
    wrapped = UserError("Error running tool t: for good")
    wrapped.__cause__ = terminal
    assert _failure_of(wrapped) is terminal
    transient = ConnectionError("reset")
    wrapped_transient = UserError("Error running tool t: reset")
    wrapped_transient.__cause__ = transient
    assert _failure_of(wrapped_transient) is transient
    final = _failure_of(MaxTurnsExceeded("Max turns (3) exceeded"))
    assert isinstance(final, TerminalError) and "MaxTurnsExceeded" in final.message


@fast
def test_an_agent_run_outside_a_handler_says_so() -> None:
    from framework.ext.openai import DurableRunner

    agent = Agent(name="lost", model=ScriptedModel("lost", chat_script))
    with pytest.raises(RuntimeError, match="no Restate handler is running"):
        asyncio.run(DurableRunner.run(agent, "hi"))


@fast
def test_without_the_library_the_import_names_the_extra() -> None:
    probe = (
        "import sys; sys.modules['agents'] = None\n"
        "try:\n    import framework.ext.openai\n"
        "except ImportError as error:\n    print(error)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'framework[openai]'" in result.stdout
