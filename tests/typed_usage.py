"""Typing checks of the public API, verified by mypy --strict over tests/ (test_quality):
``assert_type`` fails the type check if what a user sees is not what is written here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

import framework
from framework import RestateDurableFuture, gather


def _one() -> int:
    return 1


def _text() -> str:
    return "x"


async def gather_is_typed_per_position(ctx: framework.Context) -> None:
    number, text = await gather(ctx.run_typed("n", _one), ctx.run_typed("t", _text))
    assert_type(number, RestateDurableFuture[int])
    assert_type(await text, str)
    many = await gather(*[ctx.run_typed(f"n{i}", _one) for i in range(9)])
    assert_type(many, list[RestateDurableFuture[Any]])


async def futures_keep_their_types(ctx: framework.Context) -> None:
    timed = ctx.run_typed("n", _one).or_timeout(timedelta(seconds=1))
    assert_type(timed, RestateDurableFuture[int])
    assert_type(ctx.run_typed("t", _text).map(len), RestateDurableFuture[int])
    assert_type(await framework.first_success(ctx.run_typed("n", _one)), int)
