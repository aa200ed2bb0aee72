"""Durable futures: what the context's methods return.

Awaiting one waits through the journal (``Invocation.await_keys``): it returns at once
when the journal already holds the result, suspends the invocation when nothing can
progress, and raises TerminalError(409) when the invocation is cancelled meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from typing import Any, Generic, TypeVar

from framework._journal import Key, Result
from framework._runtime.invocation import Invocation, await_result, result_to_value
from framework.exceptions import DurableTimeoutError
from framework.serde import DefaultSerde, Serde

T = TypeVar("T")
U = TypeVar("U")


class _NoneSerde(Serde[None]):
    def deserialize(self, buf: bytes) -> None:
        return None

    def serialize(self, obj: None) -> bytes:
        return b""


NONE_SERDE = _NoneSerde()


class RestateDurableFuture(Generic[T], Awaitable[T]):
    """The result of a durable step; awaiting an already-known result costs no loop turn."""

    __slots__ = ("_invocation", "_key", "_serde")

    def __init__(self, invocation: Invocation, key: Key, serde: Serde[T]) -> None:
        self._invocation = invocation
        self._key = key
        self._serde = serde

    def __await__(self) -> Generator[Any, None, T]:
        invocation = self._invocation
        # On replay the result is usually known already: skip the waiting generator.
        result = invocation.machine.resolve_one(self._key)
        if result is None:
            result = yield from await_result(invocation, self._key)
        if invocation.codec is None:  # the replay hot path: no extra generator
            return result_to_value(result, self._serde)  # type: ignore[no-any-return]
        return (yield from _value_of(invocation, result, self._serde))

    def is_completed(self) -> bool:
        """Whether awaiting this future returns (or raises) without waiting."""
        return self._invocation.machine.result(self._key) is not None

    def _wait_keys(self) -> tuple[Key, ...]:
        """The notifications any one of which may complete this future."""
        return (self._key,)

    def map(self, fn: Callable[[T], U]) -> RestateDurableFuture[U]:
        """A future of ``fn(value)``. ``fn`` runs each time the future is awaited, replays
        included, so it must be deterministic (no I/O: that belongs in ``ctx.run``)."""
        return _MappedFuture(self, fn)

    def or_timeout(self, timeout: timedelta) -> RestateDurableFuture[T]:
        """This future, or ``DurableTimeoutError`` (a TerminalError, 408) if it has not
        completed within ``timeout``. The timeout is a durable timer raced against the
        future, so every replay takes the branch the first run took."""
        invocation = self._invocation
        wake_up = int(time.time() * 1000 + timeout / timedelta(milliseconds=1))
        timer = invocation.machine.sleep(wake_up, "")
        invocation.wrote()
        return _TimeoutFuture(self, timer, timeout)


class CompletedFuture(RestateDurableFuture[T]):
    """A durable future whose value was known when it was made (eager state, replay)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self._value
        yield  # pragma: no cover - makes this a generator that never suspends

    def is_completed(self) -> bool:
        return True


class KnownResultFuture(RestateDurableFuture[T]):
    """A journal result known when the future was made (eager state): awaiting it decodes
    it like any other result, through the journal value codec if there is one."""

    __slots__ = ("_result",)

    def __init__(self, invocation: Invocation, result: Result, serde: Serde[T]) -> None:
        self._invocation = invocation
        self._result = result
        self._serde = serde

    def __await__(self) -> Generator[Any, None, T]:
        return (yield from _value_of(self._invocation, self._result, self._serde))

    def is_completed(self) -> bool:
        return True


def _value_of(invocation: Invocation, result: Result, serde: Serde[T]) -> Generator[Any, None, T]:
    """What awaiting a journal result gives: decoded by the codec (asynchronous, so only when
    one is configured), then by the serde; a failure raises."""
    codec = invocation.codec
    if codec is not None and isinstance(result, bytes):
        result = yield from codec.decode(result).__await__()
    return result_to_value(result, serde)  # type: ignore[no-any-return]


class _MappedFuture(RestateDurableFuture[U]):
    """Another future's value, transformed."""

    __slots__ = ("_fn", "_inner")

    def __init__(self, inner: RestateDurableFuture[Any], fn: Callable[[Any], U]) -> None:
        self._invocation = inner._invocation
        self._key = inner._key
        self._inner = inner
        self._fn = fn

    def __await__(self) -> Generator[Any, None, U]:
        value = yield from self._inner.__await__()
        return self._fn(value)

    def is_completed(self) -> bool:
        return self._inner.is_completed()

    def _wait_keys(self) -> tuple[Key, ...]:
        return self._inner._wait_keys()


class _TimeoutFuture(RestateDurableFuture[T]):
    """A future raced against a durable timer: its value if it completes first, else
    DurableTimeoutError. When both are in, the future wins (it completed in time)."""

    __slots__ = ("_inner", "_timeout", "_timer")

    def __init__(self, inner: RestateDurableFuture[T], timer: Key, timeout: timedelta) -> None:
        self._invocation = inner._invocation
        self._key = inner._key
        self._inner = inner
        self._timer = timer
        self._timeout = timeout

    def _wait_keys(self) -> tuple[Key, ...]:
        return (*self._inner._wait_keys(), self._timer)

    def _timed_out(self) -> bool:
        return self._invocation.machine.result(self._timer) is not None

    def is_completed(self) -> bool:
        return self._inner.is_completed() or self._timed_out()

    def __await__(self) -> Generator[Any, None, T]:
        if not self.is_completed():
            yield from self._invocation.await_keys(self._wait_keys(), require_all=False)
        if self._inner.is_completed():
            return (yield from self._inner.__await__())
        raise DurableTimeoutError(f"not completed within {self._timeout}")


class RestateDurableSleepFuture(RestateDurableFuture[None]):
    """A durable timer: completes when the server's timer fires, even across restarts."""

    __slots__ = ()


class SendHandle:
    """What a one-way send returns: the id of the invocation it started."""

    __slots__ = ("_invocation", "_invocation_id_key")

    def __init__(self, invocation: Invocation, invocation_id_key: Key) -> None:
        self._invocation = invocation
        self._invocation_id_key = invocation_id_key

    async def invocation_id(self) -> str:
        """The id of the invocation this send started (``inv_...``)."""
        return str(await _RawResult(self._invocation, self._invocation_id_key))

    async def cancel_invocation(self) -> None:
        """Cancel the invocation: ``ctx.cancel_invocation(await h.invocation_id())``."""
        invocation_id = await self.invocation_id()
        self._invocation.machine.cancel_invocation(invocation_id)
        self._invocation.wrote()


class RestateDurableCallFuture(RestateDurableFuture[T]):
    """The result of a call to another handler, and the id of the invocation it started."""

    __slots__ = ("_started",)

    def __init__(
        self, invocation: Invocation, key: Key, serde: Serde[T], invocation_id_key: Key
    ) -> None:
        super().__init__(invocation, key, serde)
        self._started = SendHandle(invocation, invocation_id_key)

    async def invocation_id(self) -> str:
        """The id of the called invocation (``inv_...``)."""
        return await self._started.invocation_id()

    async def cancel_invocation(self) -> None:
        """Cancel the called invocation: ``ctx.cancel_invocation(await f.invocation_id())``."""
        await self._started.cancel_invocation()


class _RawResult:
    """Awaits a notification's raw journal result."""

    __slots__ = ("_invocation", "_key")

    def __init__(self, invocation: Invocation, key: Key) -> None:
        self._invocation = invocation
        self._key = key

    def __await__(self) -> Generator[Any, None, Any]:
        result = yield from await_result(self._invocation, self._key)
        return result_to_value(result, NONE_SERDE)


class DurablePromise(Generic[T]):
    """A workflow's named promise: resolved once (by any of its handlers or from outside),
    awaited by any of them; it lives as long as the workflow."""

    def __init__(self, name: str, serde: Serde[T] | None = None) -> None:
        self.name = name
        self.serde: Serde[T] = serde if serde is not None else DefaultSerde()

    def resolve(self, value: T) -> Awaitable[None]:
        raise NotImplementedError  # pragma: no cover - the server-side promise overrides

    def reject(self, message: str, code: int = 500) -> Awaitable[None]:
        raise NotImplementedError  # pragma: no cover

    def peek(self) -> Awaitable[T | None]:
        raise NotImplementedError  # pragma: no cover

    def value(self) -> RestateDurableFuture[T]:
        raise NotImplementedError  # pragma: no cover

    def __await__(self) -> Generator[Any, None, T]:
        return self.value().__await__()


class StateKeysFuture(RestateDurableFuture[list[str]]):
    """The state keys the server sends (lazy state), as strings."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, list[str]]:
        result = yield from await_result(self._invocation, self._key)
        return [k.decode() for k in result] if isinstance(result, list) else []


__all__ = [
    "NONE_SERDE",
    "CompletedFuture",
    "DurablePromise",
    "KnownResultFuture",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "SendHandle",
    "StateKeysFuture",
]
