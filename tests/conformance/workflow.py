"""BlockAndWaitWorkflow: its run waits on a durable promise that another handler resolves."""

from __future__ import annotations

from framework import TerminalError, Workflow, WorkflowContext, WorkflowSharedContext

block_and_wait = Workflow("BlockAndWaitWorkflow")

_PROMISE = "durable-promise"
_INPUT = "my-state"


@block_and_wait.main(name="run")
async def run(ctx: WorkflowContext, input: str) -> str:
    ctx.set(_INPUT, input)
    promise = ctx.promise(_PROMISE, type_hint=str)
    output = await promise.value()
    if await promise.peek() != output:
        raise TerminalError("peek does not see the value the promise was resolved with")
    return output


@block_and_wait.handler(name="unblock")
async def unblock(ctx: WorkflowSharedContext, output: str) -> None:
    await ctx.promise(_PROMISE, type_hint=str).resolve(output)


@block_and_wait.handler(name="getState")
async def get_state(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get(_INPUT, type_hint=str)
