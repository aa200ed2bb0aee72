"""The agent of bench/agents.py, written once and bound to either SDK's pydantic-ai
integration at import time (``BENCH_SDK=official``: ``restate.ext.pydantic``, else
``framework.ext.pydantic``); ``BENCH_PREFIX`` prefixes the service name.

One invocation is one agent turn: a model call asking for a tool, the tool, a model call
answering. The model is scripted (no network) and costs nothing, so what is measured is the
SDK's work around it: journaling two model responses and one tool result.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

SDK = os.environ.get("BENCH_SDK", "framework")
PREFIX = os.environ.get("BENCH_PREFIX", "")

sdk: Any
ext: Any
if SDK == "official":
    import restate as sdk
    import restate.ext.pydantic as ext
else:
    import framework as sdk
    import framework.ext.pydantic as ext


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("lookup", {"key": "a"}, tool_call_id="c1")])
    return ModelResponse(parts=[TextPart("the answer is 42")])


agent = Agent(FunctionModel(scripted), instructions="answer")


@agent.tool_plain
def lookup(key: str) -> str:
    return f"value of {key}"


durable = ext.RestateAgent(agent)
service = sdk.Service(f"{PREFIX}AgentBench")


@service.handler()
async def turn(ctx: Any, question: str) -> str:
    result = await durable.run(question)
    return str(result.output)


app = sdk.app([service])
