"""Services exercising what code written for the official SDK reaches for beyond the context
API: a journal value codec (AES-GCM), the internal unwinding exceptions, the attempt-finished
event, current_context, the replay flag, contextvar and extension data.

Served in the test process (the harness serves app objects in-process), so what the handlers
record in ``EVENTS`` is visible to the tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import framework
from framework import (
    Context,
    ObjectContext,
    RestateDurableFuture,
    WorkflowContext,
    WorkflowSharedContext,
)
from framework._preview import explicit_recovery
from framework.context_managers import contextvar
from framework.entry_codec import JournalValueCodec
from framework.exceptions import is_internal_exception
from framework.extensions import current_context
from framework.logging import restate_context_is_replaying
from framework.server_context import get_extension_data, set_extension_data

# (what, invocation id or key, detail) in the order the handlers saw them.
EVENTS: list[tuple[str, str, Any]] = []

# The tasks watching for the end of an attempt (kept referenced so they are not collected).
WATCHERS: set[asyncio.Future[None]] = set()

SECRET_MARK = "plaintext-marker"  # must never reach the server's journal or state unencrypted


class AesGcmCodec(JournalValueCodec):
    """Encrypts every journal value with AES-GCM (a random nonce in front of each)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.encoded = 0
        self.decoded = 0

    def encode(self, buf: bytes) -> bytes:
        self.encoded += 1
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, buf, None)

    async def decode(self, buf: bytes) -> bytes:
        self.decoded += 1
        await asyncio.sleep(0)  # decoding may really be asynchronous (a key service, say)
        return self._aead.decrypt(buf[:12], buf[12:], None)


CODEC = AesGcmCodec(AESGCM.generate_key(bit_length=128))


async def codec_provider() -> JournalValueCodec:
    """A provider, as an app can take one: awaited once, at the first invocation."""
    EVENTS.append(("codec provided", "", None))
    return CODEC


# -- everything that passes through the codec -----------------------------------------------

vault = framework.VirtualObject("Vault")


@vault.handler()
async def store(ctx: ObjectContext, secret: dict[str, str]) -> dict[str, Any]:
    ctx.set("secret", secret)
    stamped = await ctx.run_typed("stamp", lambda: {**secret, "stamped": SECRET_MARK})
    echoed = await ctx.service_call(echo, stamped)
    awakeable: RestateDurableFuture[str]
    name, awakeable = ctx.awakeable()
    ctx.service_send(resolver, {"id": name, "value": f"{SECRET_MARK} via awakeable"})
    via_awakeable = await awakeable
    read_back: dict[str, str] | None = await ctx.get("secret")
    return {"echoed": echoed, "awakeable": via_awakeable, "state": read_back}


@vault.handler(kind="shared")
async def peek(ctx: framework.ObjectSharedContext) -> dict[str, str] | None:
    return await ctx.get("secret")


helpers = framework.Service("CodecHelpers")


@helpers.handler()
async def echo(ctx: Context, value: dict[str, Any]) -> dict[str, Any]:
    return {"echo": value}


@helpers.handler()
async def resolver(ctx: Context, request: dict[str, str]) -> None:
    ctx.resolve_awakeable(request["id"], request["value"])


approval = framework.Workflow("CodecApproval")


@approval.main()
async def run(ctx: WorkflowContext, subject: str) -> str:
    decision = await ctx.promise("decision", type_hint=str).value()
    return f"{subject}: {decision}"


@approval.handler()
async def decide(ctx: WorkflowSharedContext, decision: str) -> None:
    await ctx.promise("decision", type_hint=str).resolve(decision)


codec_app = framework.app([vault, helpers, approval], journal_value_codec=codec_provider)


# -- unwinding, the attempt, and reaching the handler from library code -----------------------


@contextvar
@asynccontextmanager
async def tenant() -> AsyncIterator[str]:
    yield "tenant-7"


class Closable:
    """Extension data that wants to be closed when the attempt ends."""

    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id

    async def __close__(self) -> None:
        EVENTS.append(("closed", self.invocation_id, None))


def library_helper() -> str:
    """Code that is not handed the context (an agent tool, a tracing hook)."""
    ctx = current_context()
    assert ctx is not None
    return ctx.request().id


probes = framework.Service("Probes", invocation_context_managers=[tenant])


@probes.handler()
async def unwind(ctx: Context, fail_step: bool) -> str:
    invocation_id = ctx.request().id
    try:
        if fail_step:
            await ctx.run_typed("always fails", _fail)
        else:
            await ctx.sleep(timedelta(milliseconds=300))
    except BaseException as error:
        internal = is_internal_exception(error)
        EVENTS.append(("unwound", invocation_id, (type(error).__name__, internal)))
        raise
    return "woke"


def _fail() -> None:
    raise RuntimeError("this step never succeeds")


@probes.handler()
async def attempt(ctx: Context) -> str:
    request = ctx.request()
    event = request.attempt_finished_event

    async def watch() -> None:
        await event.wait()
        EVENTS.append(("attempt finished", request.id, event.is_set()))

    WATCHERS.add(asyncio.ensure_future(watch()))
    set_extension_data(ctx, "closable", Closable(request.id))
    assert get_extension_data(ctx, "closable").invocation_id == request.id
    EVENTS.append(("replaying at start", request.id, restate_context_is_replaying.get()))
    await ctx.run_typed("one", lambda: 1)
    EVENTS.append(("replaying after step", request.id, restate_context_is_replaying.get()))
    await ctx.sleep(timedelta(milliseconds=200))
    EVENTS.append(("tenant", request.id, tenant.value))
    EVENTS.append(("library sees", request.id, library_helper()))
    inside = await ctx.run_typed("inside", library_helper)
    return f"{inside == request.id}"


probes_app = framework.app([probes])


# -- explicit recovery ------------------------------------------------------------------------

ledger = framework.VirtualObject("RecoveringLedger")


async def _post_once(ctx: ObjectContext, amount: int, counter: str) -> dict[str, Any]:
    """Read the balance, stamp a step with the attempt number, write the new balance, and
    crash on the first attempt after the write is journaled."""
    attempt = ATTEMPTS[counter] = ATTEMPTS.get(counter, 0) + 1
    before = await ctx.get("balance", type_hint=int) or 0
    stamp = await ctx.run_typed("stamp", lambda: f"attempt {attempt}")
    ctx.set("balance", before + amount)
    await ctx.sleep(timedelta(milliseconds=10))
    if attempt == 1:
        raise RuntimeError("crash after the state was written")
    return {"before": before, "stamp": stamp, "attempt": attempt}


ATTEMPTS: dict[str, int] = {}


@explicit_recovery
@ledger.handler()
async def post(ctx: ObjectContext, amount: int) -> dict[str, Any]:
    return await _post_once(ctx, amount, ctx.key())


replaying_ledger = framework.VirtualObject("ReplayingLedger")


@replaying_ledger.handler()
async def post_replayed(ctx: ObjectContext, amount: int) -> dict[str, Any]:
    return await _post_once(ctx, amount, f"replayed:{ctx.key()}")


recovery_app = framework.app([ledger, replaying_ledger])
