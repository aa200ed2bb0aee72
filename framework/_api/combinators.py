"""Combinators over durable futures: gather, select, wait_completed, as_completed.

They wait through the journal (one await on the whole set, so the server can resume a
suspended invocation on exactly the right completions) and take the same branches on
every replay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar, overload

from framework._api.futures import RestateDurableFuture
from framework._journal import Key
from framework._runtime.invocation import Invocation
from framework.exceptions import TerminalError

T = TypeVar("T")


T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
F = RestateDurableFuture


# Typed per arity, so that ``a, b = await gather(fa, fb)`` knows what ``a`` and ``b`` are. The
# result is the official SDK's list at runtime; it is typed as a tuple (read it, unpack it,
# index it) because a list type cannot say what sits at each position.
@overload
async def gather(f1: F[T1], /) -> tuple[F[T1]]: ...
@overload
async def gather(f1: F[T1], f2: F[T2], /) -> tuple[F[T1], F[T2]]: ...
@overload
async def gather(f1: F[T1], f2: F[T2], f3: F[T3], /) -> tuple[F[T1], F[T2], F[T3]]: ...
@overload
async def gather(
    f1: F[T1], f2: F[T2], f3: F[T3], f4: F[T4], /
) -> tuple[F[T1], F[T2], F[T3], F[T4]]: ...
@overload
async def gather(
    f1: F[T1], f2: F[T2], f3: F[T3], f4: F[T4], f5: F[T5], /
) -> tuple[F[T1], F[T2], F[T3], F[T4], F[T5]]: ...
@overload
async def gather(*futures: F[Any]) -> list[F[Any]]: ...


async def gather(*futures: RestateDurableFuture[Any]) -> Any:
    """Wait until every future has completed (successfully or not); return them in order.

    Await each returned future for its value (or its TerminalError).
    """
    invocation, keys, simple = _pending(futures)
    if invocation is not None and simple:
        await _AwaitKeys(invocation, keys, require_all=True)
    elif invocation is not None:
        # A future raced against a timer completes with either notification: wait for
        # progress on what is pending, until every future has completed.
        while left := tuple(f for f in futures if not f.is_completed()):
            await _AwaitKeys(invocation, _keys_of(left), require_all=False)
    return list(futures)


async def all_settled(*futures: RestateDurableFuture[Any]) -> list[Any]:
    """Wait for every future; each one's value, or the TerminalError it failed with, in
    argument order (the failures are returned, not raised)."""
    await gather(*futures)
    outcomes: list[Any] = []
    for future in futures:
        try:
            outcomes.append(await future)
        except TerminalError as error:
            outcomes.append(error)
    return outcomes


async def first_success(*futures: RestateDurableFuture[T]) -> T:
    """The value of the first future to succeed (as the journal ordered their completions);
    if all of them fail, the first failure (by argument order) is raised."""
    if not futures:
        raise ValueError("first_success() needs at least one future")
    left = list(futures)
    failures: dict[int, TerminalError] = {}
    while left:
        await _any_completed(left)
        for future in [f for f in left if f.is_completed()]:
            left.remove(future)
            try:
                return await future
            except TerminalError as error:
                failures[futures.index(future)] = error
    raise failures[min(failures)]


async def wait_completed(
    *args: RestateDurableFuture[Any],
) -> tuple[list[RestateDurableFuture[Any]], list[RestateDurableFuture[Any]]]:
    """Wait until at least one future has completed: ``(completed, still pending)``."""
    await _any_completed(args)
    done: list[RestateDurableFuture[Any]] = []
    pending: list[RestateDurableFuture[Any]] = []
    for future in args:
        (done if future.is_completed() else pending).append(future)
    return done, pending


async def as_completed(
    *futures: RestateDurableFuture[Any],
) -> AsyncIterator[RestateDurableFuture[Any]]:
    """Yield the futures as they complete (those completing together in argument order)."""
    left = list(futures)
    while left:
        await _any_completed(left)
        ready = [future for future in left if future.is_completed()]
        left = [future for future in left if not future.is_completed()]
        for future in ready:
            yield future


async def select(**kws: RestateDurableFuture[Any]) -> list[Any]:
    """Wait for the first of the named futures: ``[name, value]``.

    ``match await select(ok=promise, timeout=ctx.sleep(...))`` reads well; a failed
    winner raises its TerminalError.
    """
    if not kws:
        raise ValueError("select() needs at least one future, e.g. select(a=f1, b=f2)")
    await _any_completed(kws.values())
    # The first completed in keyword order: the journal decides which ones are, so every
    # replay picks the same winner.
    name, winner = next((n, f) for n, f in kws.items() if f.is_completed())
    return [name, await winner]


async def _any_completed(futures: Iterable[RestateDurableFuture[Any]]) -> None:
    """Return once one of ``futures`` has completed (at once if one has already)."""
    futures = tuple(futures)
    invocation, keys, _simple = _pending(futures)
    if invocation is not None and not any(f.is_completed() for f in futures):
        await _AwaitKeys(invocation, keys, require_all=False)


def _keys_of(futures: Iterable[RestateDurableFuture[Any]]) -> tuple[Key, ...]:
    return tuple(key for future in futures for key in future._wait_keys())


def _pending(
    futures: tuple[RestateDurableFuture[Any], ...],
) -> tuple[Invocation | None, tuple[Key, ...], bool]:
    """The invocation the futures belong to (None if all have completed), the keys of those
    not completed yet, and whether each of those waits on a single key."""
    invocation: Invocation | None = None
    keys: list[Key] = []
    simple = True
    for future in futures:
        if not isinstance(future, RestateDurableFuture):
            raise TypeError(
                f"combinators take durable futures (ctx.run, ctx.sleep, calls, awakeables, "
                f"promises), not {type(future).__name__}"
            )
        if future.is_completed():
            continue
        owner = future._invocation
        if invocation is None:
            invocation = owner
        elif owner is not invocation:
            raise ValueError("all futures of one combinator must come from the same handler")
        waits = future._wait_keys()
        simple = simple and len(waits) == 1
        keys.extend(waits)
    return invocation, tuple(keys), simple


class _AwaitKeys:
    __slots__ = ("_invocation", "_keys", "_require_all")

    def __init__(self, invocation: Invocation, keys: tuple[Key, ...], require_all: bool) -> None:
        self._invocation = invocation
        self._keys = keys
        self._require_all = require_all

    def __await__(self) -> Any:
        return self._invocation.await_keys(self._keys, self._require_all)


__all__ = ["all_settled", "as_completed", "first_success", "gather", "select", "wait_completed"]
