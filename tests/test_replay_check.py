"""The replay check: journals recorded by a real restate-server, replayed with the same code
(ok) and with changed code (each change reported where it happens), with no side effect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

import framework
from framework._dev.admin import AdminClient
from framework._dev.replay import RecordedInvocation, export, fetch, load, replay_all
from framework.testing import HarnessEnvironment, create_test_harness

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
SIDE_EFFECTS: list[str] = []


def _effect(what: str) -> str:
    SIDE_EFFECTS.append(what)
    return what


@dataclass(frozen=True)
class Variant:
    """How the order code of the app differs from what recorded the journals."""

    rename_step: bool = False
    reorder_calls: bool = False
    remove_step: bool = False
    add_step_at_end: bool = False


def make_app(variant: Variant) -> framework.RestateApp:
    orders = framework.Service("ReplayOrders")
    stock = framework.VirtualObject("ReplayStock")
    approvals = framework.Workflow("ReplayApproval")

    @stock.handler()
    async def reserve(ctx: framework.ObjectContext, amount: int) -> int:
        left = (await ctx.get("left", type_hint=int)) or 100
        ctx.set("left", left - amount)
        return left - amount

    @stock.handler()
    async def audit(ctx: framework.ObjectContext, note: str) -> str:
        return note

    @orders.handler()
    async def place(ctx: framework.Context, amount: int) -> str:
        priced = await ctx.run_typed(
            "price-it" if variant.rename_step else "price", _effect, what=f"price {amount}"
        )
        if not variant.remove_step:
            await ctx.run_typed("tax", _effect, what=f"tax {amount}")
        await ctx.sleep(timedelta(milliseconds=1))
        if variant.reorder_calls:
            await ctx.object_call(audit, "shoes", priced)
            left = await ctx.object_call(reserve, "shoes", amount)
        else:
            left = await ctx.object_call(reserve, "shoes", amount)
            await ctx.object_call(audit, "shoes", priced)
        if variant.add_step_at_end:
            await ctx.run_typed("receipt", _effect, what="receipt")
        return f"{priced}; {left} left"

    @orders.handler()
    async def wait_for_ok(ctx: framework.Context, order: str) -> str:
        awakeable_id, approved = ctx.awakeable(type_hint=str)
        await ctx.run_typed("announce", _effect, what=f"announce {awakeable_id}")
        return await approved

    @approvals.main()
    async def run(ctx: framework.WorkflowContext, order: str) -> str:
        await ctx.promise("decision", type_hint=str).resolve(f"ok {order}")
        return await ctx.promise("decision", type_hint=str).value()

    return framework.app([orders, stock, approvals])


RECORDED = make_app(Variant())
RENAMED = make_app(Variant(rename_step=True))


@dataclass
class Recorded:
    env: HarnessEnvironment
    journals: list[RecordedInvocation]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def recorded() -> AsyncIterator[Recorded]:
    async with create_test_harness(RECORDED) as env:
        async with httpx.AsyncClient(base_url=env.ingress_url, timeout=30) as ingress:
            for amount in (1, 2):
                answer = await ingress.post("/ReplayOrders/place", json=amount)
                assert answer.status_code == 200, answer.text
            answer = await ingress.post("/ReplayApproval/w1/run", json="order-1")
            assert answer.status_code == 200, answer.text
            # In flight: it waits on an awakeable nobody resolves.
            sent = await ingress.post("/ReplayOrders/wait_for_ok/send", json="order-2")
            assert sent.status_code == 202, sent.text
            admin = AdminClient(env.admin_url)
            for _ in range(100):
                journals = fetch(admin)
                if any(j.handler == "wait_for_ok" and len(j.entries) >= 3 for j in journals):
                    break
                await asyncio.sleep(0.1)
        yield Recorded(env, journals)


async def test_the_code_that_recorded_the_journals_replays_them_all(
    recorded: Recorded,
) -> None:
    targets = sorted(j.target for j in recorded.journals)
    assert targets.count("ReplayOrders/place") == 2
    assert "ReplayApproval/w1/run" in targets and "ReplayOrders/wait_for_ok" in targets
    assert "ReplayStock/shoes/reserve" in targets
    before = list(SIDE_EFFECTS)
    reports = await replay_all(RECORDED, recorded.journals)
    assert [r.outcome for r in reports if r.outcome != "ok"] == [], [str(r) for r in reports]
    assert before == SIDE_EFFECTS  # no ctx.run closure ran


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (Variant(rename_step=True), "named 'price'"),
        (Variant(remove_step=True), "named 'tax'"),
        (Variant(reorder_calls=True), "ReplayStock/reserve"),
    ],
    ids=["renamed-step", "removed-step", "reordered-calls"],
)
async def test_a_changed_handler_is_reported_at_the_first_difference(
    recorded: Recorded, variant: Variant, expected: str
) -> None:
    before = list(SIDE_EFFECTS)
    places = [j for j in recorded.journals if j.handler == "place"]
    reports = await replay_all(make_app(variant), places)
    for report in reports:
        assert report.outcome == "mismatch", str(report)
        assert expected in report.detail, str(report)
        assert report.source.startswith(__file__), report.source  # the line in this file
        assert report.index is not None and report.index > 0
    assert before == SIDE_EFFECTS


async def test_a_step_added_at_the_end_diverges_after_the_recorded_journal(
    recorded: Recorded,
) -> None:
    before = list(SIDE_EFFECTS)
    places = [j for j in recorded.journals if j.handler == "place"]
    reports = await replay_all(make_app(Variant(add_step_at_end=True)), places)
    # The recorded ones completed: their journal holds the Output where 'receipt' now is.
    assert {r.outcome for r in reports} == {"mismatch"}, [str(r) for r in reports]
    in_flight = [j for j in recorded.journals if j.handler == "wait_for_ok"]
    assert [r.outcome for r in await replay_all(RECORDED, in_flight)] == ["ok"]
    assert before == SIDE_EFFECTS


async def test_journals_exported_to_files_replay_the_same(
    recorded: Recorded, tmp_path: Path
) -> None:
    export(recorded.journals, tmp_path)
    again = load(tmp_path)
    assert sorted(j.id for j in again) == sorted(j.id for j in recorded.journals)
    reports = await replay_all(make_app(Variant(rename_step=True)), again)
    assert {r.invocation.target for r in reports if r.outcome == "mismatch"} == {
        "ReplayOrders/place"
    }


async def test_the_cli_exits_1_on_a_mismatch_and_0_when_all_replay(
    recorded: Recorded, tmp_path: Path
) -> None:
    export(recorded.journals, tmp_path)

    def cli(app_ref: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "framework", "replay", app_ref, "--from", str(tmp_path)]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)

    same = await asyncio.to_thread(cli, "tests.test_replay_check:RECORDED")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.count(": ok") == len(recorded.journals), same.stdout
    renamed = await asyncio.to_thread(cli, "tests.test_replay_check:RENAMED")
    assert renamed.returncode == 1, renamed.stdout + renamed.stderr
    assert "ReplayOrders/place: mismatch" in renamed.stdout
    assert "test_replay_check.py:" in renamed.stdout  # the line that changed
