"""What integrations (agent SDKs, tracing, your own helpers) use to reach the running
handler without being handed its context: the current context, per-attempt extension data,
whether the handler is replaying, and ``contextvar`` for async context managers.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from framework._runtime.invocation import close_extension_values, current_invocation

if TYPE_CHECKING:
    from framework._api.context import Context
    from framework._runtime.invocation import Invocation

P = ParamSpec("P")
T = TypeVar("T")


def current_context() -> Context | None:
    """The context of the handler running in this task (or in this ``ctx.run`` closure's
    task or thread), or None outside a handler."""
    invocation = current_invocation.get()
    return None if invocation is None else invocation.context


def _invocation_of(ctx: Context) -> Invocation:
    invocation = getattr(ctx, "_invocation", None)
    if invocation is None:
        raise RuntimeError(
            f"extension data needs the context a handler was given, not {type(ctx).__name__}"
        )
    return invocation  # type: ignore[no-any-return]


def set_extension_data(ctx: Context, key: str, value: Any) -> None:
    """Keep ``value`` under ``key`` for this attempt of the invocation. A value with a
    ``__close__`` method (sync or async) is closed when the attempt ends."""
    invocation = _invocation_of(ctx)
    if invocation.extension_data is None:
        invocation.extension_data = {}
    invocation.extension_data[key] = value


def get_extension_data(ctx: Context, key: str) -> Any:
    """What ``set_extension_data`` kept under ``key`` in this attempt, or None."""
    data = _invocation_of(ctx).extension_data
    return None if data is None else data.get(key)


def clear_extension_data(ctx: Context, key: str) -> None:
    """Forget ``key`` (without closing its value)."""
    data = _invocation_of(ctx).extension_data
    if data is not None:
        data.pop(key, None)


@asynccontextmanager
async def auto_close_extension_data(data: dict[str, Any]) -> AsyncIterator[None]:
    """On exit, close every value of ``data`` that has a ``__close__`` method, then empty
    it (attempts do this for their own extension data by themselves)."""
    try:
        yield
    finally:
        await close_extension_values(data)


class ReplayingFlag:
    """Whether the running handler is replaying journaled steps (its side effects already
    happened once): read it as ``restate_context_is_replaying.get()``, False outside a
    handler. Computed when read, so it costs the handler nothing."""

    __slots__ = ()

    def get(self, default: bool = False) -> bool:
        invocation = current_invocation.get()
        if invocation is None:
            return default
        return bool(invocation.machine.replaying)

    def __repr__(self) -> str:
        return f"<restate_context_is_replaying: {self.get()}>"


restate_context_is_replaying = ReplayingFlag()


class contextvar(Generic[P, T]):
    """Makes the value an async context manager yields readable as ``.value`` while it is
    entered, for hooks that only take managers yielding None (such as
    ``invocation_context_managers``)::

        @contextvar
        @asynccontextmanager
        async def db_session() -> AsyncIterator[Session]:
            async with make_session() as session:
                yield session

        svc = Service("Orders", invocation_context_managers=[db_session])
        ...  # in a handler: db_session.value is the session of this invocation
    """

    def __init__(self, func: Callable[P, AbstractAsyncContextManager[T]]) -> None:
        self.func = func
        self._current: contextvars.ContextVar[tuple[T] | None] = contextvars.ContextVar(
            f"contextvar:{getattr(func, '__qualname__', func)}", default=None
        )

    @property
    def value(self) -> T:
        """The value yielded by the manager entered in this task (LookupError if none)."""
        held = self._current.get()
        if held is None:
            raise LookupError(
                f"{getattr(self.func, '__qualname__', self.func)} is not entered in this task: "
                "read .value inside `async with` (or in a handler it wraps)"
            )
        return held[0]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> AbstractAsyncContextManager[None]:
        return self._enter(args, kwargs)

    @asynccontextmanager
    async def _enter(self, args: Any, kwargs: Any) -> AsyncIterator[None]:
        async with self.func(*args, **kwargs) as value:
            token = self._current.set((value,))
            try:
                yield None
            finally:
                self._current.reset(token)


__all__ = [
    "ReplayingFlag",
    "auto_close_extension_data",
    "clear_extension_data",
    "contextvar",
    "current_context",
    "get_extension_data",
    "restate_context_is_replaying",
    "set_extension_data",
]
