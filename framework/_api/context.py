"""The handler's context: the user API (state, durable steps, deterministic helpers).

Each context class matches the official Restate Python SDK's; the handler kind decides
which one a handler gets (Context for services, ObjectContext for exclusive object
handlers, ObjectSharedContext for shared ones, WorkflowContext for a workflow's main...).
"""

from __future__ import annotations

import abc
import random as _random
import time as _time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, cast, overload

from framework._api.futures import (
    NONE_SERDE,
    CompletedFuture,
    DurablePromise,
    KnownResultFuture,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
    StateKeysFuture,
)
from framework._api.targets import (
    HandlerType,
    Target,
    check_awakeable_id,
    check_scope,
    check_scope_name,
    resolve_target,
    to_headers,
)
from framework._journal import StateMachine
from framework._protocol import Failure
from framework._runtime.invocation import AttemptFinished, Invocation, inside_run
from framework._runtime.options import DEFAULT_RUN_OPTIONS, RunOptions
from framework._runtime.tracing import outgoing_trace_headers
from framework.serde import BytesSerde, DefaultSerde, Serde, return_hint

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the official SDK's name for a handler's input type
O = TypeVar("O")  # noqa: E741 - and for its output type
P = ParamSpec("P")


class AttemptFinishedEvent(abc.ABC):
    """Set when the current attempt of the invocation is over: its output was sent, it
    suspended, it failed (the server will retry), or the server's stream went away. Wait on
    it to stop work that only made sense for this attempt (a call a ``ctx.run`` closure
    started, say)."""

    @abc.abstractmethod
    def is_set(self) -> bool:
        """Whether the attempt is over."""

    @abc.abstractmethod
    async def wait(self) -> None:
        """Return once the attempt is over."""


AttemptFinishedEvent.register(AttemptFinished)


class KeyValueStore(abc.ABC):
    """The state operations of a keyed handler (ObjectContext and WorkflowContext have them)."""

    @abc.abstractmethod
    def get(
        self,
        name: str,
        serde: Serde[T] | None = None,
        type_hint: type[T] | None = None,
        entry_name: str | None = None,
    ) -> Awaitable[T | None]: ...

    @abc.abstractmethod
    def set(
        self, name: str, value: T, serde: Serde[T] | None = None, entry_name: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    def clear(self, name: str, entry_name: str | None = None) -> None: ...

    @abc.abstractmethod
    def clear_all(self, entry_name: str | None = None) -> None: ...

    @abc.abstractmethod
    def state_keys(self, entry_name: str | None = None) -> Awaitable[list[str]]: ...


@dataclass
class Request:
    """What the server told us about this invocation."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    attempt_finished_event: AttemptFinishedEvent
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


class _WorkflowPromise(DurablePromise[T]):
    __slots__ = ("_context",)

    def __init__(self, context: Context, name: str, serde: Serde[T]) -> None:
        super().__init__(name, serde)
        self._context = context

    def value(self) -> RestateDurableFuture[T]:
        """Wait until the promise is resolved and return its value (raise if rejected)."""
        context = self._context
        machine = context._machine()
        return RestateDurableFuture(context._invocation, machine.get_promise(self.name), self.serde)

    def peek(self) -> RestateDurableFuture[T | None]:
        """The promise's value if it is resolved already, else None (raise if rejected)."""
        context = self._context
        machine = context._machine()
        return RestateDurableFuture(
            context._invocation,
            machine.peek_promise(self.name),
            self.serde,  # type: ignore[arg-type]
        )

    def resolve(self, value: T) -> RestateDurableFuture[None]:
        """Resolve the promise; awaiting the result raises if it was completed already."""
        return self._complete(self._context._invocation.encode(self.serde.serialize(value)))

    def reject(self, message: str, code: int = 500) -> RestateDurableFuture[None]:
        """Reject the promise: whoever awaits it gets a TerminalError(message, code)."""
        return self._complete(Failure(code=code, message=message))

    def _complete(self, outcome: bytes | Failure) -> RestateDurableFuture[None]:
        context = self._context
        machine = context._machine()
        completion_id = machine.complete_promise(self.name, outcome)
        context._invocation.wrote()
        return RestateDurableFuture(context._invocation, completion_id, NONE_SERDE)


class Context:
    """The context of a service handler."""

    __slots__ = ("_invocation", "_random", "_request")

    def __init__(self, invocation: Invocation, request: Request) -> None:
        self._invocation = invocation
        self._request = request
        self._random: _random.Random | None = None

    def _machine(self) -> StateMachine:
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
        The result's type (for decoding it on replay) is ``options.type_hint``, else the
        action's return annotation.
        """
        options = options if options is not None else DEFAULT_RUN_OPTIONS
        serde: Serde[Any] = options.serde
        if isinstance(serde, DefaultSerde) and serde.type_hint is None:
            hint = options.type_hint or return_hint(action)
            if hint is not None:
                serde = serde.with_maybe_type(hint)
        machine = self._machine()
        must_execute, completion_id = machine.run(name)
        if must_execute:
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
        wake_up = int(_time.time() * 1000 + delta / timedelta(milliseconds=1))
        completion_id = machine.sleep(wake_up, name or "")
        self._invocation.wrote()
        return RestateDurableSleepFuture(self._invocation, completion_id, NONE_SERDE)

    # --- calling other handlers ------------------------------------------------------------

    def scope(self, scope: str) -> ScopedContext:
        """Calls and sends within ``scope``: a group of invocations the server co-locates
        and to which it applies concurrency limits (by ``limit_key``).

        Preview, as in the official SDK: it needs protocol v7 and a restate-server started
        with ``RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7=true`` and
        ``RESTATE_EXPERIMENTAL_ENABLE_VQUEUES=true`` (on a new cluster). Without them the
        call fails the attempt (the server retries it until fixed).
        """
        check_scope_name(scope)
        return ScopedContext(self, scope)

    def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        """Call a Service handler and get a future of its result."""
        target = resolve_target(tpe, "service", "service_call")
        return self._call(target, None, arg, idempotency_key, headers)

    def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Start a Service handler without waiting for it (after ``send_delay``, if set)."""
        target = resolve_target(tpe, "service", "service_send")
        return self._send(target, None, arg, send_delay, idempotency_key, headers)

    def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        """Call a VirtualObject handler on the object ``key``."""
        target = resolve_target(tpe, "object", "object_call")
        return self._call(target, key, arg, idempotency_key, headers)

    def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send to a VirtualObject handler; sends to one key arrive in program order."""
        target = resolve_target(tpe, "object", "object_send")
        return self._send(target, key, arg, send_delay, idempotency_key, headers)

    def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        """Call a Workflow handler of the workflow with id ``key``."""
        target = resolve_target(tpe, "workflow", "workflow_call")
        return self._call(target, key, arg, idempotency_key, headers)

    def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send to a Workflow handler (e.g. start its main handler) without waiting."""
        target = resolve_target(tpe, "workflow", "workflow_send")
        return self._send(target, key, arg, send_delay, idempotency_key, headers)

    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateDurableCallFuture[bytes]:
        """Call any handler by name with raw bytes; the future gives raw bytes back.

        ``scope`` and ``limit_key``: see ``Context.scope``.
        """
        target = Target(service, handler, _BYTES_SERDE, _BYTES_SERDE)
        return self._call(target, key, arg, idempotency_key, headers, scope, limit_key)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        """Send raw bytes to any handler by name (``scope``: see ``Context.scope``)."""
        target = Target(service, handler, _BYTES_SERDE, _BYTES_SERDE)
        return self._send(target, key, arg, send_delay, idempotency_key, headers, scope, limit_key)

    def _call(
        self,
        target: Target,
        key: str | None,
        arg: Any,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateDurableCallFuture[Any]:
        machine = self._machine()
        check_scope(machine.version, scope, limit_key)
        invocation_id_key, result_key = machine.call(
            target.service,
            target.handler,
            self._invocation.encode(target.input_serde.serialize(arg)),
            key=key or "",
            headers=to_headers(outgoing_trace_headers(headers)),
            idempotency_key=idempotency_key,
            scope=scope,
            limit_key=limit_key,
        )
        invocation = self._invocation
        invocation.track_child_call(invocation_id_key)
        invocation.wrote()
        return RestateDurableCallFuture(
            invocation, result_key, target.output_serde, invocation_id_key
        )

    def _send(
        self,
        target: Target,
        key: str | None,
        arg: Any,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        machine = self._machine()
        check_scope(machine.version, scope, limit_key)
        invoke_time = 0
        if send_delay:
            invoke_time = int(_time.time() * 1000 + send_delay / timedelta(milliseconds=1))
        invocation_id_key = machine.send(
            target.service,
            target.handler,
            self._invocation.encode(target.input_serde.serialize(arg)),
            key=key or "",
            invoke_time_ms=invoke_time,
            headers=to_headers(outgoing_trace_headers(headers)),
            idempotency_key=idempotency_key,
            scope=scope,
            limit_key=limit_key,
        )
        self._invocation.wrote()
        return SendHandle(self._invocation, invocation_id_key)

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel another invocation: it sees TerminalError(409) at its next await."""
        if not invocation_id:
            raise ValueError("cancel_invocation needs an invocation id (inv_...)")
        self._machine().cancel_invocation(invocation_id)
        self._invocation.wrote()

    def attach_invocation(
        self,
        invocation_id: str,
        serde: Serde[T] | None = None,
        type_hint: type[T] | None = None,
    ) -> RestateDurableFuture[T]:
        """Wait for another invocation's result (it must have been started with an
        idempotency key, or be a workflow, or have been sent)."""
        if not invocation_id:
            raise ValueError("attach_invocation needs an invocation id (inv_...)")
        machine = self._machine()
        completion_id = machine.attach_invocation(invocation_id)
        self._invocation.wrote()
        return RestateDurableFuture(self._invocation, completion_id, _serde_for(serde, type_hint))

    # --- awakeables and signals ------------------------------------------------------------

    def awakeable(
        self, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> tuple[str, RestateDurableFuture[T]]:
        """A future that something outside completes: hand out the id, await the future.

        Resolve it from another handler with ``ctx.resolve_awakeable(id, value)`` or over
        HTTP with ``POST {ingress}/restate/awakeables/{id}/resolve``.
        """
        machine = self._machine()
        signal_id = machine.next_signal_id()
        return machine.awakeable_id(signal_id), RestateDurableFuture(
            self._invocation, -signal_id, _serde_for(serde, type_hint)
        )

    def resolve_awakeable(self, name: str, value: I, serde: Serde[I] | None = None) -> None:
        """Complete the awakeable ``name`` (an id from ``ctx.awakeable()``) with ``value``."""
        check_awakeable_id(name)
        payload = self._invocation.encode(_serde_for(serde, type(value)).serialize(value))
        self._machine().complete_awakeable(name, payload)
        self._invocation.wrote()

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        """Fail the awakeable ``name``: its awaiter gets TerminalError(failure_message)."""
        check_awakeable_id(name)
        failure = Failure(code=failure_code, message=failure_message)
        self._machine().complete_awakeable(name, failure)
        self._invocation.wrote()

    def signal(
        self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> RestateDurableFuture[T]:
        """A future of the named signal ``name`` sent to this invocation with
        ``ctx.resolve_signal(invocation_id, name, value)``."""
        self._machine()
        return RestateDurableFuture(self._invocation, name, _serde_for(serde, type_hint))

    def resolve_signal(
        self, invocation_id: str, name: str, value: I, serde: Serde[I] | None = None
    ) -> None:
        """Send the named signal ``name`` with ``value`` to another invocation."""
        payload = self._invocation.encode(_serde_for(serde, type(value)).serialize(value))
        self._machine().send_signal(invocation_id, name, payload)
        self._invocation.wrote()

    def reject_signal(
        self, invocation_id: str, name: str, failure_message: str, failure_code: int = 500
    ) -> None:
        """Fail the named signal ``name`` of another invocation."""
        failure = Failure(code=failure_code, message=failure_message)
        self._machine().send_signal(invocation_id, name, failure)
        self._invocation.wrote()


def _serde_for(serde: Serde[T] | None, type_hint: Any) -> Serde[T]:
    if serde is None:
        serde = DefaultSerde()
    if isinstance(serde, DefaultSerde) and type_hint is not None:
        return serde.with_maybe_type(type_hint)
    return serde


_BYTES_SERDE = BytesSerde()


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
            return KnownResultFuture(self._invocation, result, serde)  # type: ignore[arg-type]
        return RestateDurableFuture(self._invocation, completion_id, serde)  # type: ignore[arg-type]

    def state_keys(self, entry_name: str | None = None) -> Awaitable[list[str]]:
        """The names of all state entries of this object."""
        keys, completion_id = self._machine().state_keys()
        if keys is not None:
            return CompletedFuture([k.decode() for k in keys])
        # The serde goes unused: _StateKeysFuture decodes the key list itself.
        return StateKeysFuture(self._invocation, completion_id, cast(Any, NONE_SERDE))


class ObjectContext(ObjectSharedContext):
    """The context of an exclusive virtual-object handler: read and write state."""

    __slots__ = ()

    # (KeyValueStore.register below: a real base class would cost every context a __dict__.)

    def set(
        self, name: str, value: T, serde: Serde[T] | None = None, entry_name: str | None = None
    ) -> None:
        """Store ``value`` under ``name`` (journaled; visible to later reads at once)."""
        payload = self._invocation.encode((serde or _DEFAULT_SERDE).serialize(value))
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
KeyValueStore.register(ObjectContext)


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handlers: read its state, use its promises."""

    __slots__ = ()

    def promise(
        self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> DurablePromise[T]:
        """The workflow's durable promise ``name`` (shared with the main handler)."""
        return _WorkflowPromise(self, name, _serde_for(serde, type_hint))


class WorkflowContext(ObjectContext):
    """The context of a workflow's main handler (runs once per workflow id)."""

    __slots__ = ()

    def promise(
        self, name: str, serde: Serde[T] | None = None, type_hint: type[T] | None = None
    ) -> DurablePromise[T]:
        """The workflow's durable promise ``name`` (shared with its other handlers)."""
        return _WorkflowPromise(self, name, _serde_for(serde, type_hint))


class ScopedContext:
    """``ctx.scope(name)``: the calls and sends of a context, within one scope."""

    __slots__ = ("_context", "_scope")

    def __init__(self, context: Context, scope: str) -> None:
        self._context = context
        self._scope = scope

    def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        target = resolve_target(tpe, "service", "service_call")
        return self._context._call(
            target, None, arg, idempotency_key, headers, self._scope, limit_key
        )

    def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        target = resolve_target(tpe, "service", "service_send")
        return self._context._send(
            target, None, arg, send_delay, idempotency_key, headers, self._scope, limit_key
        )

    def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        target = resolve_target(tpe, "object", "object_call")
        return self._context._call(
            target, key, arg, idempotency_key, headers, self._scope, limit_key
        )

    def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        target = resolve_target(tpe, "object", "object_send")
        return self._context._send(
            target, key, arg, send_delay, idempotency_key, headers, self._scope, limit_key
        )

    def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        target = resolve_target(tpe, "workflow", "workflow_call")
        return self._context._call(
            target, key, arg, idempotency_key, headers, self._scope, limit_key
        )

    def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        target = resolve_target(tpe, "workflow", "workflow_send")
        return self._context._send(
            target, key, arg, send_delay, idempotency_key, headers, self._scope, limit_key
        )


__all__ = [
    "AttemptFinishedEvent",
    "Context",
    "KeyValueStore",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RunOptions",
    "WorkflowContext",
    "WorkflowSharedContext",
]
