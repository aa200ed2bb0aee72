"""Turnstile: concurrent tasks pass in the order of its ids, whatever order they start in."""

from __future__ import annotations

import asyncio
import random

import pytest

from framework.exceptions import TerminalError
from framework.ext.turnstile import Turnstile

pytestmark = pytest.mark.fast


def test_tasks_pass_in_the_order_of_the_ids() -> None:
    ids = [f"call-{i}" for i in range(8)]
    passed: list[str] = []

    async def participant(turnstile: Turnstile, id_: str) -> None:
        await asyncio.sleep(random.random() / 100)
        await turnstile.wait_for(id_)
        await asyncio.sleep(0)  # another task gets the loop here, and must still wait
        passed.append(id_)
        turnstile.allow_next_after(id_)

    async def main() -> None:
        turnstile = Turnstile(ids)
        shuffled = ids[:]
        random.shuffle(shuffled)
        await asyncio.gather(*(participant(turnstile, id_) for id_ in shuffled))

    for _ in range(5):
        passed.clear()
        asyncio.run(main())
        assert passed == ids


def test_cancel_all_after_fails_the_later_ones_only() -> None:
    async def main() -> list[str]:
        turnstile = Turnstile(["a", "b", "c"])
        outcomes: list[str] = []

        async def participant(id_: str) -> None:
            try:
                await turnstile.wait_for(id_)
            except TerminalError as error:
                outcomes.append(f"{id_}:{error.status_code}")
                return
            outcomes.append(f"{id_}:ok")
            if id_ == "a":
                turnstile.cancel_all_after("a")

        await asyncio.gather(participant("c"), participant("b"), participant("a"))
        return outcomes

    assert sorted(asyncio.run(main())) == ["a:ok", "b:409", "c:409"]


def test_unknown_and_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        Turnstile(["a", "a"])

    async def main() -> None:
        await Turnstile(["a"]).wait_for("z")

    with pytest.raises(KeyError, match="'z'"):
        asyncio.run(main())
