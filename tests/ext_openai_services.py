"""Services for tests/test_ext_openai.py: OpenAI Agents SDK agents run by
``framework.ext.openai.DurableRunner`` against scripted models (no network, no API key).

Every model request and every tool side effect appends a line to the file named by
``EXT_LOG`` (``model <scenario> <pid>``, ``tool <what> <pid>``), so the tests can count them
across service restarts. A scripted model answers from the conversation it is given (how
many tool outputs it holds, what the user said), so a restarted run that replays journaled
responses and a fresh run get the same answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import openai
from agents import (
    Agent,
    AgentOutputSchemaBase,
    Handoff,
    Model,
    ModelProvider,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    RunConfig,
    Tool,
    TResponseInputItem,
    Usage,
    function_tool,
    set_tracing_disabled,
)
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseStreamEvent,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from pydantic import BaseModel

from framework import (
    Context,
    ObjectContext,
    RunOptions,
    Service,
    TerminalError,
    VirtualObject,
    app,
    select,
)
from framework.ext.openai import (
    DurableRunner,
    durable_function_tool,
    raise_terminal_errors,
    restate_context,
)

# The SDK's default tracing exports to OpenAI's API; these tests run offline.
set_tracing_disabled(True)


def log(*words: object) -> None:
    path = os.environ.get("EXT_LOG")
    if path:
        with open(path, "a") as file:
            file.write(" ".join(str(w) for w in (*words, os.getpid())) + "\n")


def logged(*words: object) -> str:
    log(*words)
    return "logged"


def marker(name: str) -> Path:
    return Path(os.environ["EXT_LOG"]).with_name(name)


# -- scripted models ---------------------------------------------------------------------------


def call(name: str, call_id: str, arguments: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call", call_id=call_id, name=name, arguments=arguments, id=f"fc_{call_id}"
    )


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg_scripted",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def _items(input: str | list[TResponseInputItem]) -> list[dict[str, Any]]:
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    return [dict(item) for item in input]


def tool_outputs(input: str | list[TResponseInputItem]) -> list[str]:
    return [str(i["output"]) for i in _items(input) if i.get("type") == "function_call_output"]


def user_messages(input: str | list[TResponseInputItem]) -> list[str]:
    return [
        str(i["content"])
        for i in _items(input)
        if i.get("role") == "user" and isinstance(i.get("content"), str)
    ]


Script = Callable[[str | list[TResponseInputItem]], list[Any]]


class ScriptedModel(Model):
    """Answers each request with ``script(input)``; logs every request it serves."""

    def __init__(self, scenario: str, script: Script) -> None:
        self.scenario = scenario
        self.script = script

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        log("model", self.scenario)
        return ModelResponse(
            output=self.script(input),
            usage=Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15),
            response_id=f"resp_{self.scenario}",
        )

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[ResponseStreamEvent]:
        return self._stream(input)

    async def _stream(
        self, input: str | list[TResponseInputItem]
    ) -> AsyncIterator[ResponseStreamEvent]:
        log("model-stream", self.scenario)
        items = self.script(input)
        for index, item in enumerate(items):
            yield ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                item=item,
                output_index=index,
                sequence_number=index,
            )
        # Like some backends, the completed response leaves its output to the done events.
        response = Response(
            id=f"resp_{self.scenario}",
            created_at=0,
            model="scripted",
            object="response",
            output=[],
            parallel_tool_calls=True,
            tool_choice="auto",
            tools=[],
        )
        yield ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=len(items)
        )


class FailingModel(ScriptedModel):
    """Raises ``failure()`` while ``until_marker`` does not exist (forever without one)."""

    def __init__(
        self,
        scenario: str,
        script: Script,
        failure: Callable[[], Exception],
        until_marker: str | None = None,
    ) -> None:
        super().__init__(scenario, script)
        self.failure = failure
        self.until_marker = until_marker

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        if self.until_marker is None or not marker(self.until_marker).exists():
            log("model", self.scenario, "failing")
            if self.until_marker is not None:
                marker(self.until_marker).touch()
            raise self.failure()
        return await super().get_response(
            system_instructions,
            input,
            model_settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )


class ScriptedProvider(ModelProvider):
    """Hands out scripted models by name (the provider path of the run config)."""

    def __init__(self, models: dict[str, ScriptedModel]) -> None:
        self.models = models

    def get_model(self, model_name: str | None) -> Model:
        return self.models[model_name or ""]


# -- tools -------------------------------------------------------------------------------------


@durable_function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    log("tool", "add", a, b)
    time.sleep(0.3)  # the slower of the two parallel calls: it still journals first
    return a + b


@durable_function_tool
async def multiply(a: int, b: int) -> int:
    """Multiply two numbers."""
    log("tool", "multiply", a, b)
    return a * b


class Note(BaseModel):
    text: str
    length: int


@durable_function_tool(name_override="take_note")
def note(text: str) -> Note:
    """Store a note; returns a model (journaled as JSON, decoded back into a Note)."""
    log("tool", "note", text)
    return Note(text=text, length=len(text))


@durable_function_tool
def blocking_step(what: str) -> str:
    """A step that waits for a marker file: the test kills the service while it waits."""
    log("tool", "blocking-start", what)
    deadline = time.monotonic() + 120
    while not marker("release").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("never released")
        time.sleep(0.05)
    log("tool", "blocking-done", what)
    return f"{what} done"


@durable_function_tool
def explode(reason: str) -> str:
    """Fails for good."""
    log("tool", "explode", reason)
    raise TerminalError(f"tool gave up: {reason}", status_code=422)


@function_tool(failure_error_function=raise_terminal_errors)
async def ask_human(question: str, timeout_seconds: float) -> str:
    """Ask a person; wait for their answer up to a timeout."""
    ctx = restate_context()
    awakeable_id, answer = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish question", log, RunOptions(), "awakeable", awakeable_id)
    match await select(answer=answer, timeout=ctx.sleep(timedelta(seconds=timeout_seconds))):
        case ["answer", value]:
            return f"the human said {value}"
        case _:
            return "no answer in time"


@function_tool(failure_error_function=raise_terminal_errors)
async def two_steps(label: str) -> str:
    """Two steps in a row, each awaited: run concurrently with another call of this tool,
    the steps of both would interleave in whatever order their acks arrive."""
    ctx = restate_context()
    first = await ctx.run_typed(f"{label} first", logged, RunOptions(), "tool", "step", label, 1)
    await ctx.run_typed(f"{label} second", logged, RunOptions(), "tool", "step", label, 2)
    return f"{label} {first}"


# -- scripts -------------------------------------------------------------------------------------


def two_tools_script(input: str | list[TResponseInputItem]) -> list[Any]:
    outputs = tool_outputs(input)
    if not outputs:
        # Two calls in one response: the SDK would run them in parallel.
        return [
            call("add", "c_add", '{"a": 2, "b": 3}'),
            call("multiply", "c_mul", '{"a": 4, "b": 5}'),
        ]
    if len(outputs) == 2:
        return [call("take_note", "c_note", '{"text": "sum ' + outputs[0] + '"}')]
    return [say(f"sum={outputs[0]} product={outputs[1]} note={outputs[2]}")]


def parallel_script(input: str | list[TResponseInputItem]) -> list[Any]:
    outputs = tool_outputs(input)
    if not outputs:
        return [
            call("two_steps", "c_a", '{"label": "a"}'),
            call("two_steps", "c_b", '{"label": "b"}'),
        ]
    return [say(" / ".join(outputs))]


def crash_script(input: str | list[TResponseInputItem]) -> list[Any]:
    outputs = tool_outputs(input)
    if not outputs:
        return [call("add", "c1", '{"a": 1, "b": 1}')]
    if len(outputs) == 1:
        return [call("blocking_step", "c2", '{"what": "second"}')]
    return [say(f"finished: {outputs[0]}, {outputs[1]}")]


def explode_script(input: str | list[TResponseInputItem]) -> list[Any]:
    if not tool_outputs(input):
        return [call("explode", "c1", '{"reason": "no fuel"}')]
    return [say("the model was called again after a terminal tool failure")]


def human_script(timeout: float) -> Script:
    def script(input: str | list[TResponseInputItem]) -> list[Any]:
        outputs = tool_outputs(input)
        if not outputs:
            args = '{"question": "ship it?", "timeout_seconds": ' + str(timeout) + "}"
            return [call("ask_human", "c1", args)]
        return [say(f"verdict: {outputs[0]}")]

    return script


def answer_script(text: str) -> Script:
    def script(input: str | list[TResponseInputItem]) -> list[Any]:
        return [say(f"{text} ({user_messages(input)[-1]})")]

    return script


def delegate_script(tool: str) -> Script:
    def script(input: str | list[TResponseInputItem]) -> list[Any]:
        outputs = tool_outputs(input)
        if not outputs:
            return [call(tool, "c1", '{"input": "help me"}')]
        return [say(f"helper said: {outputs[0]}")]

    return script


def chat_script(input: str | list[TResponseInputItem]) -> list[Any]:
    said = user_messages(input)
    return [say(f"{len(said)} messages; first: {said[0]}; last: {said[-1]}")]


# -- services ------------------------------------------------------------------------------------

agent_service = Service("OpenAIAgents")


@agent_service.handler()
async def two_tools(ctx: Context, prompt: str) -> str:
    # The model set on the agent itself (the run config names none).
    agent = Agent(
        name="calculator",
        instructions="Use the tools.",
        tools=[add, multiply, note],
        model=ScriptedModel("two_tools", two_tools_script),
    )
    result = await DurableRunner.run(agent, prompt)
    return str(result.final_output)


@agent_service.handler()
async def parallel(ctx: Context, prompt: str) -> str:
    agent = Agent(
        name="juggler", tools=[two_steps], model=ScriptedModel("parallel", parallel_script)
    )
    result = await DurableRunner.run(agent, prompt)
    return str(result.final_output)


@agent_service.handler()
async def crash(ctx: Context, prompt: str) -> str:
    # A model name looked up through the run config's provider.
    agent = Agent(name="worker", tools=[add, blocking_step], model="scripted-crash")
    provider = ScriptedProvider({"scripted-crash": ScriptedModel("crash", crash_script)})
    result = await DurableRunner.run(agent, prompt, run_config=RunConfig(model_provider=provider))
    return str(result.final_output)


@agent_service.handler()
async def terminal_tool(ctx: Context, prompt: str) -> str:
    # A run-wide model instance in the run config.
    agent = Agent(name="reckless", tools=[explode])
    config = RunConfig(model=ScriptedModel("explode", explode_script))
    result = await DurableRunner.run(agent, prompt, run_config=config)
    return str(result.final_output)


@agent_service.handler()
async def human(ctx: Context, timeout: float) -> str:
    agent = Agent(
        name="careful",
        tools=[ask_human],
        model=ScriptedModel("human", human_script(timeout)),
    )
    result = await DurableRunner.run(agent, "may I ship?")
    return str(result.final_output)


@agent_service.handler()
async def handoff(ctx: Context, prompt: str) -> str:
    # Each agent has a model instance of its own: both are reached durably.
    specialist = Agent(name="specialist", model=ScriptedModel("specialist", answer_script("done")))
    triage = Agent(
        name="triage",
        handoffs=[specialist],
        model=ScriptedModel("triage", delegate_script("transfer_to_specialist")),
    )
    result = await DurableRunner.run(triage, prompt)
    return f"{result.last_agent.name}: {result.final_output}"


@agent_service.handler()
async def streamed_helper(ctx: Context, prompt: str) -> str:
    # An agent used as a tool with on_stream runs its own streamed run, with the parent's
    # (durable) run config: its model's stream is drained and journaled as one response.
    events: list[str] = []

    async def on_stream(event: Any) -> None:
        events.append(type(event).__name__)

    helper = Agent(name="helper", model=ScriptedModel("helper", answer_script("streamed")))
    boss = Agent(
        name="boss",
        tools=[
            helper.as_tool(tool_name="ask_helper", tool_description="Ask.", on_stream=on_stream)
        ],
        model=ScriptedModel("boss", delegate_script("ask_helper")),
    )
    result = await DurableRunner.run(boss, prompt)
    return str(result.final_output)


@agent_service.handler()
async def flaky_model(ctx: Context, prompt: str) -> str:
    model = FailingModel(
        "flaky", answer_script("recovered"), lambda: RuntimeError("overloaded"), "flaky-failed"
    )
    agent = Agent(name="patient", model=model)
    options = RunOptions[Any](max_attempts=3, initial_retry_interval=timedelta(milliseconds=100))
    result = await DurableRunner.run(agent, prompt, run_options=options)
    return str(result.final_output)


def bad_request() -> Exception:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/responses")
    response = httpx2.Response(400, request=request)
    return openai.BadRequestError("unknown parameter", response=response, body=None)


@agent_service.handler()
async def rejected_model(ctx: Context, prompt: str) -> str:
    agent = Agent(
        name="doomed", model=FailingModel("rejected", answer_script("never"), bad_request)
    )
    result = await DurableRunner.run(agent, prompt)
    return str(result.final_output)


chat_object = VirtualObject("OpenAIChat")


@chat_object.handler()
async def chat(ctx: ObjectContext, message: str) -> str:
    agent = Agent(name="chatty", model=ScriptedModel("chat", chat_script))
    result = await DurableRunner.run(agent, message, use_restate_session=True)
    return str(result.final_output)


@chat_object.handler()
async def history(ctx: ObjectContext) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = await ctx.get("openai_agents_session", type_hint=list) or []
    return items


application = app([agent_service, chat_object])
