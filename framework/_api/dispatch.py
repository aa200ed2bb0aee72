"""One attempt of a handler's body: the Request and the context it gets, its input decoded,
its context managers and span around it, its result encoded for the journal.

The endpoint's pump hands this to the invocation driver; it knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any, cast

from framework._api.context import (
    AttemptFinishedEvent,
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from framework._api.hooks import AttemptInfo
from framework._api.services import Handler
from framework._journal import FAIL, PAUSE, RETRY
from framework._protocol import Failure, StartMessage
from framework._runtime.codec import JournalValueCodec
from framework._runtime.hooks import run_through
from framework._runtime.invocation import Invocation
from framework._runtime.tracing import handler_span, incoming_trace_context
from framework.exceptions import TerminalError
from framework.serde import describe_decode_error

_BEHAVIORS = {"retry": RETRY, "pause": PAUSE, "fail": FAIL}


def context_class(handler: Handler) -> type[Context]:
    """The context a handler of this kind gets (shared handlers cannot write state)."""
    if handler.service_kind == "service":
        return Context
    if handler.service_kind == "object":
        return ObjectSharedContext if handler.kind == "shared" else ObjectContext
    return WorkflowContext if handler.kind == "workflow" else WorkflowSharedContext


async def run_handler(
    handler: Handler,
    invocation: Invocation,
    attempt_headers: dict[str, str],
    codec: JournalValueCodec | None,
) -> bytes | Failure:
    """Run ``handler`` for ``invocation`` once its journal has started; its encoded result.

    A malformed input is a TerminalError(400): no retry can fix it.
    """
    machine = invocation.machine
    start = machine.start
    command = machine.input
    assert start is not None
    raw_input = bytes(command.value) if command is not None and command.value else b""
    request = Request(
        id=start.debug_id,
        headers={h.key: h.value for h in command.headers} if command is not None else {},
        attempt_headers=attempt_headers,  # the pump never changes them: no copy
        body=raw_input,
        # Registered as an AttemptFinishedEvent (the runtime cannot import the API layer).
        attempt_finished_event=cast(AttemptFinishedEvent, invocation.attempt_finished),
        scope=start.scope,
        limit_key=start.limit_key,
        idempotency_key=start.idempotency_key,
    )
    ctx = context_class(handler)(invocation, request)
    invocation.context = ctx
    if handler.journal_mismatch is not None:
        invocation.mismatch_behavior = _BEHAVIORS[handler.journal_mismatch]
    trace_context = incoming_trace_context(request.attempt_headers, request.headers)
    with handler_span(
        invocation.target,
        start.debug_id,
        start.retry_count_since_last_stored_entry,
        trace_context,
    ):
        argument: Any = None
        if handler.takes_input:
            if codec is not None:
                try:
                    raw_input = await codec.decode(raw_input)
                except Exception as error:
                    raise TerminalError(
                        f"the journal value codec could not decode the input of "
                        f"{handler.service_name}/{handler.name}: {error!r}",
                        status_code=400,
                    ) from error
            try:
                argument = handler.input_serde.deserialize(raw_input)
            except Exception as error:
                raise TerminalError(
                    f"invalid input for {handler.service_name}/{handler.name}: "
                    f"{describe_decode_error(error)}",
                    status_code=400,
                ) from error
        async with contextlib.AsyncExitStack() as stack:
            for manager in handler.context_managers:
                await stack.enter_async_context(manager())
            if not handler.hooks:  # the common case: no closures, no chain
                result = await (
                    handler.fn(ctx, argument) if handler.takes_input else handler.fn(ctx)
                )
            else:
                result = await _with_hooks(handler, invocation, ctx, argument, start, request)
    return invocation.encode(handler.output_serde.serialize(result))


async def _with_hooks(
    handler: Handler,
    invocation: Invocation,
    ctx: Context,
    argument: Any,
    start: StartMessage,
    request: Request,
) -> Any:
    """The handler's body inside its attempt hooks; its step hooks handed to the driver."""
    invocation.step_hooks = handler.step_hooks
    info = AttemptInfo(
        invocation_id=start.debug_id,
        target=invocation.target,
        attempt=start.retry_count_since_last_stored_entry + 1,
        request=request,
    )

    def body() -> Awaitable[Any]:
        return handler.fn(ctx, argument) if handler.takes_input else handler.fn(ctx)

    return await run_through(handler.attempt_hooks, info, body)
