"""The handler's context: the user API (state, durable steps, deterministic helpers).

Each context class matches the official Restate Python SDK's; the handler kind decides
which one a handler gets (Context for services, ObjectContext for exclusive object
handlers, ObjectSharedContext for shared ones, WorkflowContext for a workflow's main...).
"""

from __future__ import annotations

import random as _random
import time as _time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from framework._invocation import Invocation, await_completion, inside_run, result_to_value
from framework._protocol import SleepCommandMessage
from framework.serde import DefaultSerde, Serde

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class RunOptions(Generic[T]):
    """How ``ctx.run_typed`` serializes a step's result and retries a failing closure.

    With no retry field set, a failing closure is retried forever with the server's
    policy. Once ``max_attempts`` or ``max_duration`` is reached the step is recorded as
    a TerminalError, which the handler can catch.
    """

    serde: Serde[T] = field(default_factory=DefaultSerde)
    type_hint: type[T] | None = None
    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    max_retry_duration: timedelta | None = None


@dataclass
class Request:
    """What the server told us about this invocation."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


class RestateDurableFuture(Generic[T], Awaitable[T]):
    """The result of a durable step; awaiting an already-known result costs no loop turn."""

    __slots__ = ("_completion_id", "_invocation", "_serde")

    def __init__(self, invocation: Invocation, completion_id: int, serde: Serde[T]) -> None:
        self._invocation = invocation
        self._completion_id = completion_id
        self._serde = serde

    def __await__(self) -> Generator[Any, None, T]:
        invocation = self._invocation
        # On replay the result is usually known already: skip the waiting generator.
        result = invocation.machine.result(self._completion_id)
        if result is None:
            result = yield from await_completion(invocation, self._completion_id)
        return result_to_value(result, self._serde)  # type: ignore[no-any-return]

    def is_completed(self) -> bool:
        return self._invocation.machine.result(self._completion_id) is not None


class _CompletedFuture(RestateDurableFuture[T]):
    """A durable future whose value was known when it was made (eager state, replay)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self._value
        yield  # pragma: no cover - makes this a generator that never suspends

    def is_completed(self) -> bool:
        return True


class RestateDurableSleepFuture(RestateDurableFuture[None]):
    """A durable timer: completes when the server's timer fires, even across restarts."""

    __slots__ = ()


class Context:
    """The context of a service handler."""

    __slots__ = ("_invocation", "_random", "_request")

    def __init__(self, invocation: Invocation, request: Request) -> None:
        self._invocation = invocation
        self._request = request
        self._random: _random.Random | None = None

    def _machine(self) -> Any:
        name = inside_run.get()
        if name is not None:
            raise RuntimeError(
                f"the Restate context was used inside the ctx.run closure {name!r}. A run "
                "closure must not call ctx methods (they are durable steps of their own): "
                "await them in the handler, before or after the run."
            )
        return self._invocation.machine

    def request(self) -> Request:
        """The invocation's id, headers and raw input body."""
        return self._request

    def random(self) -> _random.Random:
        """A ``random.Random`` seeded per invocation: the same values on every retry."""
        if self._random is None:
            self._random = _random.Random(self._invocation.machine.random_seed)
        return self._random

    def uuid(self) -> _uuid.UUID:
        """A UUID (v4 shape) drawn from ``random()``: stable across retries."""
        return _uuid.UUID(int=self.random().getrandbits(128), version=4)

    def time(self) -> RestateDurableFuture[float]:
        """The current time as seconds since the epoch (a float, like ``time.time()``),
        recorded as a durable step so every retry sees the same value.

        It is seconds, not milliseconds: ``int(await ctx.time() * 1000)`` gives millis.
        """
        return self.run_typed("time", _time.time)

    @overload
    def run_typed(
        self,
        name: str,
        action: Callable[P, Coroutine[Any, Any, T]],
        options: RunOptions[T] = ...,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]: ...

    @overload
    def run_typed(
        self,
        name: str,
        action: Callable[P, T],
        options: RunOptions[T] = ...,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[T]: ...

    def run_typed(
        self,
        name: str,
        action: Callable[P, Any],
        options: RunOptions[Any] | None = None,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RestateDurableFuture[Any]:
        """Run ``action(*args, **kwargs)`` once, durably: its result is journaled and
        returned from the journal on every replay, without running it again.

        A plain function runs in a worker thread (so blocking I/O is fine); an async one
        is awaited. A failure is retried per ``options``; raise TerminalError to stop.
        """
        options = options if options is not None else RunOptions()
        serde: Serde[Any] = options.serde
        if options.type_hint is not None and isinstance(serde, DefaultSerde):
            serde = serde.with_maybe_type(options.type_hint)
        machine = self._machine()
        result, completion_id = machine.run(name)
        if result is None:
            self._invocation.start_run(completion_id, name, action, args, kwargs, options, serde)
        return RestateDurableFuture(self._invocation, completion_id, serde)

    def run(
        self,
        name: str,
        action: Callable[..., Any],
        serde: Serde[T] | None = None,
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]:
        """Like ``run_typed``, with the official SDK's older keyword style."""
        options: RunOptions[Any] = RunOptions(
            serde=serde if serde is not None else DefaultSerde(),
            type_hint=type_hint,
            max_attempts=max_attempts,
            max_retry_duration=max_retry_duration,
        )
        return self.run_typed(name, action, options, *(args or ()))

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        """A durable timer; the invocation may suspend while it runs and resume after."""
        machine = self._machine()
        completion_id = machine.next_completion_id()
        wake_up = int(_time.time() * 1000 + delta / timedelta(milliseconds=1))
        recorded = machine.add_command(
            SleepCommandMessage(
                wake_up_time=wake_up, result_completion_id=completion_id, name=name or ""
            )
        )
        if recorded is not None:
            completion_id = recorded.result_completion_id
        else:
            self._invocation.wrote()
        return RestateDurableSleepFuture(self._invocation, completion_id, _NONE_SERDE)


class _NoneSerde(Serde[None]):
    def deserialize(self, buf: bytes) -> None:
        return None

    def serialize(self, obj: None) -> bytes:
        return b""


_NONE_SERDE = _NoneSerde()


class ObjectSharedContext(Context):
    """The context of a shared virtual-object handler: read-only state, concurrent."""

    __slots__ = ()

    def key(self) -> str:
        """The key of the object (or workflow id) this invocation runs on."""
        start = self._invocation.machine.start
        return start.key if start is not None else ""

    def get(
        self,
        name: str,
        serde: Serde[T] | None = None,
        type_hint: type[T] | None = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[T | None]:
        """The value stored under ``name``, or None."""
        if serde is None:
            serde = DefaultSerde(type_hint)
        result, completion_id = self._machine().get_state(name)
        if result is not None:
            return _CompletedFuture(result_to_value(result, serde))
        return RestateDurableFuture(self._invocation, completion_id, serde)  # type: ignore[arg-type]

    def state_keys(self, entry_name: str | None = None) -> Awaitable[list[str]]:
        """The names of all state entries of this object."""
        keys, completion_id = self._machine().state_keys()
        if keys is not None:
            return _CompletedFuture([k.decode() for k in keys])
        return _keys_future(self._invocation, completion_id)


async def _keys_future(invocation: Invocation, completion_id: int) -> list[str]:
    result = await _Completion(invocation, completion_id)
    return [k.decode() for k in result] if isinstance(result, list) else []


class _Completion:
    """Awaits a completion's raw journal result."""

    __slots__ = ("_completion_id", "_invocation")

    def __init__(self, invocation: Invocation, completion_id: int) -> None:
        self._invocation = invocation
        self._completion_id = completion_id

    def __await__(self) -> Generator[Any, None, Any]:
        return (yield from await_completion(self._invocation, self._completion_id))


class ObjectContext(ObjectSharedContext):
    """The context of an exclusive virtual-object handler: read and write state."""

    __slots__ = ()

    def set(
        self, name: str, value: T, serde: Serde[T] | None = None, entry_name: str | None = None
    ) -> None:
        """Store ``value`` under ``name`` (journaled; visible to later reads at once)."""
        payload = (serde or _DEFAULT_SERDE).serialize(value)
        self._machine().set_state(name, payload)
        self._invocation.wrote()

    def clear(self, name: str, entry_name: str | None = None) -> None:
        """Remove the state entry ``name``."""
        self._machine().clear_state(name)
        self._invocation.wrote()

    def clear_all(self, entry_name: str | None = None) -> None:
        """Remove every state entry of this object."""
        self._machine().clear_all_state()
        self._invocation.wrote()


_DEFAULT_SERDE: DefaultSerde[Any] = DefaultSerde()


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handlers."""

    __slots__ = ()


class WorkflowContext(ObjectContext):
    """The context of a workflow's main handler."""

    __slots__ = ()


__all__ = [
    "Context",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunOptions",
    "WorkflowContext",
    "WorkflowSharedContext",
]
