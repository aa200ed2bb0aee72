"""The harness reads and seeds a virtual object's state through the admin API, and restarts
a completed invocation as a new one (from its input, or keeping a journal prefix)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

import framework
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

RUNS: list[str] = []


class Cart(BaseModel):
    items: list[str]


carts = framework.VirtualObject("SeededCart")


@carts.handler()
async def add(ctx: framework.ObjectContext, item: str) -> Cart:
    cart = await ctx.get("cart", type_hint=Cart) or Cart(items=[])
    cart.items.append(item)
    ctx.set("cart", cart)
    ctx.set("count", len(cart.items))
    return cart


steps = framework.Service("Restartable")


def _note(what: str) -> str:
    RUNS.append(what)
    return what


@steps.handler()
async def twice(ctx: framework.Context, name: str) -> str:
    first = await ctx.run_typed("first", _note, what=f"first {name}")
    second = await ctx.run_typed("second", _note, what=f"second {name}")
    return f"{first}, {second}"


@pytest.fixture(params=["plain", "codec"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[HarnessEnvironment]:
    from tests.capability_services import CODEC

    codec = CODEC if request.param == "codec" else None
    async with create_test_harness(
        framework.app([carts, steps], journal_value_codec=codec), journal_value_codec=codec
    ) as environment:
        yield environment


async def test_seeded_state_is_what_the_object_sees(env: HarnessEnvironment) -> None:
    state = env.state_of(carts, "alice")
    await state.set_all({"cart": Cart(items=["socks"]), "count": 1})
    assert (await env.client.object_call(add, "alice", "shoes")).items == ["socks", "shoes"]
    assert await state.get("cart", type_hint=Cart) == Cart(items=["socks", "shoes"])
    assert await state.get_all() == {"cart": {"items": ["socks", "shoes"]}, "count": 2}
    await state.set("count", 40)
    assert await env.state_of("SeededCart", "alice").get("count") == 40
    await state.clear("cart")
    assert (await env.client.object_call(add, "alice", "hat")).items == ["hat"]
    assert await env.state_of(add, "bob").get_all() == {}  # another key, untouched


async def test_restart_as_new_from_the_input_or_from_a_step(env: HarnessEnvironment) -> None:
    RUNS.clear()
    handle = await env.client.service_send(twice, "ann")
    assert await handle.attach() == "first ann, second ann"
    again = await env.restart_as_new(handle.invocation_id)
    assert again != handle.invocation_id
    assert await env.client.attach(again) == "first ann, second ann"
    assert RUNS == ["first ann", "second ann"] * 2
    # Keeping the journal up to the first step's completion: only the second runs again.
    entries = await env.query(
        f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{handle.invocation_id}' "
        "ORDER BY index"
    )
    first_done = next(e["index"] for e in entries if e["entry_type"] == "Notification: Run")
    kept = await env.client.restart_as_new(
        handle.invocation_id, admin_url=env.admin_url, from_index=first_done
    )
    assert await env.client.attach(kept) == "first ann, second ann"
    assert RUNS == ["first ann", "second ann"] * 2 + ["second ann"]
