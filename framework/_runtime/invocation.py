"""The driver of one invocation: runs the handler, its ``ctx.run`` closures, and decides
when the attempt ends (output, suspension, or an error for the server to retry).

It sits between the journal state machine (which it feeds and asks) and the endpoint
(which hands it request bytes and sends the bytes it produces). No HTTP here.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from framework._journal import FAIL, PAUSE, RETRY, VOID, JournalMismatch, Key, Result, StateMachine
from framework._protocol import Failure, FailureMetadata, ProtocolError, ProtocolVersion
from framework._runtime.hooks import StepHook, StepInfo, run_through
from framework._runtime.steps import run_sync
from framework._runtime.tracing import run_span
from framework.exceptions import (
    PauseError,
    RetryableError,
    SdkInternalBaseException,
    SdkInternalException,
    SuspendedException,
    TerminalError,
)

if TYPE_CHECKING:
    from framework._runtime.codec import JournalValueCodec
    from framework._runtime.options import RunOptions
    from framework.serde import Serde

# Set inside a ctx.run closure (its task or worker thread), so context calls there fail loudly.
_NEXT_STEP = {RETRY: "retry", PAUSE: "pause", FAIL: "fail"}

# The invocation whose handler (or ctx.run closure) is running in this task.
current_invocation: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "framework_current_invocation", default=None
)
inside_run: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "framework_inside_run", default=None
)

logger = logging.getLogger("framework")

SendBytes = Callable[[bytes], Awaitable[None]]

CANCELLED_STATUS = 409


class _Await:
    """One pending await of the handler: on one key, the first of several, or all of them."""

    __slots__ = ("cancellable", "keys", "require_all", "waiter")

    def __init__(
        self,
        keys: tuple[Key, ...],
        require_all: bool,
        cancellable: bool,
        waiter: asyncio.Future[None],
    ) -> None:
        self.keys = keys
        self.require_all = require_all
        self.cancellable = cancellable
        self.waiter = waiter


class AttemptFinished:
    """Set once this attempt is over (output sent, suspended, failed, or the stream gone):
    the moment to release what only lived for the attempt. ``Request.attempt_finished_event``.
    """

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        self._waiters: list[asyncio.Future[None]] | None = None  # made on the first wait()

    def is_set(self) -> bool:
        return self._is_set

    async def wait(self) -> None:
        if self._is_set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter

    def set(self) -> None:
        self._is_set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = None


class Invocation:
    """One attempt of one invocation, from the first journal entry to the last byte out."""

    def __init__(
        self,
        machine: StateMachine,
        send: SendBytes,
        target: str = "",
        codec: JournalValueCodec | None = None,
    ) -> None:
        self.machine = machine
        self.target = target  # "Service/handler", for logs
        # Encodes the values this attempt journals and decodes those it reads (app's
        # journal_value_codec); None passes them as they are.
        self.codec = codec
        self.context: Any = None  # the handler's Context, for extensions.current_context()
        self.attempt_finished = AttemptFinished()
        # What integrations keep for the attempt (server_context.set_extension_data); values
        # with a __close__ method are closed when the attempt ends.
        self.extension_data: dict[str, Any] | None = None
        # Hooks around each ctx.run closure that runs for real (framework.Hook.around_step).
        self.step_hooks: tuple[StepHook, ...] = ()
        # What the server should do after a journal mismatch (v7): retry, pause or fail.
        self.mismatch_behavior = RETRY
        self._send = send
        self._awaits: list[_Await] = []
        # Invocation-id keys of the calls made so far: cancelling us cancels them too.
        self._child_calls: list[Key] = []
        self._running_runs: dict[int, asyncio.Task[None]] = {}
        self._ended = False
        self._unwind: type[SdkInternalBaseException] | None = None
        self._handler_task: asyncio.Task[None] | None = None
        # Sends what the machine produced; it exists only while there is output to send, so an
        # invocation waiting on the server costs no task for it.
        self._flusher: asyncio.Task[None] | None = None

    def encode(self, value: bytes) -> bytes:
        """A serialized value as the journal stores it (through the codec, if any)."""
        codec = self.codec
        return value if codec is None else codec.encode(value)

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self, handler_body: Callable[[], Awaitable[bytes | Failure]]) -> None:
        """Run the handler to the end of this attempt and flush everything it produced."""
        self._handler_task = asyncio.ensure_future(self._run_handler(handler_body))
        try:
            await self._handler_task
        except asyncio.CancelledError:
            if not self._ended:
                raise
        finally:
            for task in self._running_runs.values():
                task.cancel()
            self._ended = True
            self._signal_output()
            try:
                while (flusher := self._flusher) is not None:
                    await flusher  # raises if sending failed
                    if flusher is self._flusher:
                        break
            finally:
                self.attempt_finished.set()
                if self.extension_data:
                    await close_extension_values(self.extension_data)
                # The context points back here: without this the pair (and the journal the
                # machine holds) waits for the cycle collector after every invocation.
                self.context = None

    async def _run_handler(self, handler_body: Callable[[], Awaitable[bytes | Failure]]) -> None:
        machine = self.machine
        current_invocation.set(self)
        try:
            output = await handler_body()
        except TerminalError as error:
            if self._ended:
                return
            output = _failure(error)
        except JournalMismatch as mismatch:
            self.end_attempt(
                mismatch.code, str(mismatch), related=mismatch, behavior=self.mismatch_behavior
            )
            return
        except PauseError as error:
            self.end_attempt(error.status_code, error.message, _stacktrace(error), behavior=PAUSE)
            return
        except ProtocolError as error:
            self.end_attempt(error.code, str(error))
            return
        except RetryableError as error:
            delay = error.retry_after
            self.end_attempt(
                error.status_code,
                error.message,
                _stacktrace(error),
                next_retry_delay_ms=None if delay is None else int(delay.total_seconds() * 1000),
            )
            return
        except Exception as error:
            if self._ended:
                return
            self.end_attempt(500, f"{type(error).__name__}: {error}", _stacktrace(error))
            return
        except SdkInternalBaseException as error:
            # The attempt is over and the handler unwound, as it should; raised by the
            # handler itself otherwise, which is a bug of its own.
            if not self._ended:
                self.end_attempt(500, f"the handler raised {type(error).__name__}")
            return
        if self._ended:
            return
        try:
            machine.write_output(output)
        except JournalMismatch as mismatch:
            self.end_attempt(
                mismatch.code, str(mismatch), related=mismatch, behavior=self.mismatch_behavior
            )
            return
        self._ended = True
        self._signal_output()

    def end_attempt(
        self,
        code: int,
        message: str,
        stacktrace: str = "",
        *,
        next_retry_delay_ms: int | None = None,
        related: JournalMismatch | None = None,
        behavior: int = RETRY,
    ) -> None:
        """End this attempt with an ErrorMessage; the server decides when to retry (or, by
        ``behavior`` on v7, pauses or fails the invocation)."""
        if self._ended:
            return
        start = self.machine.start
        v7 = self.machine.version >= ProtocolVersion.V7
        next_step = _NEXT_STEP.get(behavior, "retry") if v7 else "retry"
        logger.warning(
            "invocation %s: attempt ended with error %d, the server will %s it: %s%s",
            start.debug_id if start is not None else "?",
            code,
            next_step,
            message,
            f"\n{stacktrace}" if stacktrace else "",
        )
        self.machine.fail(
            code,
            message,
            stacktrace,
            next_retry_delay_ms=next_retry_delay_ms,
            related=related,
            behavior=behavior,
        )
        self._stop_handler(SdkInternalException)

    def _suspend(self) -> None:
        awaits = self._awaits
        self.machine.suspend(
            [(a.keys, a.require_all) for a in awaits], any(a.cancellable for a in awaits)
        )
        self._stop_handler(SuspendedException)

    def _stop_handler(self, unwind: type[SdkInternalBaseException]) -> None:
        """End the attempt and unwind the handler: its pending awaits raise ``unwind`` (as in
        the official SDK, so ``finally`` blocks run and ``is_internal_exception`` tells it
        apart); a handler not waiting on us, or one that swallows it, is cancelled."""
        self._ended = True
        self._unwind = unwind
        self._signal_output()
        raised = False
        for pending in self._awaits:
            if not pending.waiter.done():
                pending.waiter.set_exception(unwind())
                raised = True
        self._awaits.clear()
        task = self._handler_task
        if task is not None and not task.done():
            if raised:
                # The woken task runs first; whatever is left of it after that is cut off.
                asyncio.get_running_loop().call_soon(_cancel_if_running, task)
            else:
                task.cancel()

    def _signal_output(self) -> None:
        flusher = self._flusher
        if flusher is None or flusher.done():
            if flusher is not None and not flusher.cancelled() and flusher.exception() is not None:
                return  # sending failed: the attempt is over, run() reports it
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        machine = self.machine
        while data := machine.take_output():
            await self._send(data)

    # --- input from the endpoint ---------------------------------------------------------

    def on_input(self) -> None:
        """New bytes were fed to the machine: wake the awaits they complete."""
        self._progress()

    def on_input_error(self, error: ProtocolError) -> None:
        self.end_attempt(error.code, str(error))

    def _progress(self) -> None:
        """Reveal queued notifications one by one until some pending await can return.

        Stopping at the first await that can return (rather than revealing everything
        received) is what makes a replay see exactly what the first run saw.
        """
        machine = self.machine
        awaits = self._awaits
        while awaits:
            woken = False
            for pending in list(awaits):
                waiter = pending.waiter
                if waiter.done():  # the awaiting task was cancelled
                    awaits.remove(pending)
                elif machine.satisfied(pending.keys, pending.require_all, pending.cancellable):
                    awaits.remove(pending)
                    waiter.set_result(None)
                    woken = True
            if woken:
                if awaits and machine.has_queued:
                    # Let the woken tasks run first, then serve the remaining awaits.
                    asyncio.get_running_loop().call_soon(self._progress)
                return
            if not machine.pop_notification():
                break
        self._maybe_suspend()

    def _maybe_suspend(self) -> None:
        # Suspend only when the handler waits on durable results that this stream can no
        # longer bring, and no ctx.run closure is still working towards one of them.
        if (
            self._ended
            or not self.machine.input_closed
            or self._running_runs
            or self.machine.has_queued
        ):
            return
        if self._awaits:
            self._suspend()

    # --- what durable futures and the context ask ---------------------------------------

    def wait(
        self, keys: tuple[Key, ...], require_all: bool, cancellable: bool
    ) -> asyncio.Future[None]:
        """A future set when the await can return; it raises SuspendedException or
        SdkInternalException if the attempt ends first."""
        if self._ended and self._unwind is not None:
            raise self._unwind()
        waiter = asyncio.get_running_loop().create_future()
        self._awaits.append(_Await(keys, require_all, cancellable, waiter))
        self._signal_output()
        self._progress()
        return waiter

    def wrote(self) -> None:
        """The machine has output: let the writer pick it up when the handler yields."""
        self._signal_output()

    def track_child_call(self, invocation_id_key: Key) -> None:
        self._child_calls.append(invocation_id_key)

    def await_keys(
        self, keys: tuple[Key, ...], require_all: bool = False, cancellable: bool = True
    ) -> Generator[Any, None, None]:
        """Yield to the event loop until the await on ``keys`` can return.

        A cancellation of this invocation interrupts a cancellable await: the calls it
        made are cancelled too and the await raises TerminalError(409).
        """
        machine = self.machine
        while not machine.resolve(keys, require_all, cancellable):
            yield from self.wait(keys, require_all, cancellable)
        if cancellable and machine.cancel_requested:
            yield from self._cancelled()

    def _cancelled(self) -> Generator[Any, None, None]:
        machine = self.machine
        machine.take_cancel()
        for key in self._child_calls:
            yield from self.await_keys((key,), cancellable=False)
            invocation_id = machine.result(key)
            if isinstance(invocation_id, str):
                machine.cancel_invocation(invocation_id)
        self._child_calls.clear()
        self.wrote()
        raise TerminalError("cancelled", status_code=CANCELLED_STATUS)

    # --- ctx.run ---------------------------------------------------------------------------

    def start_run(
        self,
        completion_id: int,
        name: str,
        action: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: RunOptions[Any],
        serde: Serde[Any],
    ) -> None:
        """Execute a run's closure now, in its own task, and propose its outcome."""
        task = asyncio.ensure_future(
            self._execute_run(completion_id, name, action, args, kwargs, options, serde)
        )
        self._running_runs[completion_id] = task

    async def _execute_run(
        self,
        completion_id: int,
        name: str,
        action: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: RunOptions[Any],
        serde: Serde[Any],
    ) -> None:
        started = time.monotonic()
        inside_run.set(name)
        try:
            try:
                with run_span(name):
                    if self.step_hooks:
                        value = await self._hooked_step(name, action, args, kwargs)
                    else:
                        value = await _execute(action, args, kwargs)
                outcome: bytes | Failure = self.encode(serde.serialize(value))
            except TerminalError as error:
                outcome = _failure(error)
            except PauseError as error:
                self.end_attempt(
                    error.status_code,
                    f"ctx.run {name!r} paused the invocation: {error.message}",
                    _stacktrace(error),
                    behavior=PAUSE,
                )
                return
            except Exception as error:
                retry = _next_retry(self.machine, options, started)
                if retry.exhausted:
                    plural = "s" if retry.attempt != 1 else ""
                    outcome = Failure(
                        code=500,
                        message=f"ctx.run {name!r} gave up after {retry.attempt} attempt"
                        f"{plural}: {type(error).__name__}: {error}",
                    )
                else:
                    self.end_attempt(
                        500,
                        f"ctx.run {name!r} failed: {type(error).__name__}: {error}",
                        _stacktrace(error),
                        next_retry_delay_ms=retry.delay_ms,
                    )
                    return
            if not self._ended:
                self.machine.propose_run(completion_id, outcome)
                self._signal_output()
        finally:
            self._running_runs.pop(completion_id, None)
            if not self._running_runs and not self._ended:
                self._progress()

    async def _hooked_step(
        self,
        name: str,
        action: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        start = self.machine.start
        info = StepInfo(
            invocation_id=start.debug_id if start is not None else "",
            target=self.target,
            name=name,
            attempt=(start.retry_count_since_last_stored_entry if start is not None else 0) + 1,
        )
        return await run_through(self.step_hooks, info, lambda: _execute(action, args, kwargs))


def _cancel_if_running(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()


async def close_extension_values(extension_data: dict[str, Any]) -> None:
    """Close what integrations kept for the attempt (best effort: a failing close is
    logged and the others still run)."""
    for name, value in list(extension_data.items()):
        close = getattr(value, "__close__", None)
        if not callable(close):
            continue
        try:
            outcome = close()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.warning("closing the extension data %r failed", name, exc_info=True)
    extension_data.clear()


async def _execute(
    action: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if inspect.iscoroutinefunction(action):
        return await action(*args, **kwargs)
    # A plain function may block: it runs in a worker thread (with our contextvars, the
    # run's span among them) until it has proven fast, then inline (see _runtime/steps.py).
    value = await run_sync(action, args, kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


class _Retry(NamedTuple):
    """What a run's retry policy says after a failed attempt."""

    attempt: int  # the attempt that just failed, counting from 1
    exhausted: bool  # record the failure as a TerminalError instead of retrying
    delay_ms: int | None  # delay before the next attempt; None = the server's policy


def _next_retry(machine: StateMachine, options: RunOptions[Any], started: float) -> _Retry:
    start = machine.start
    retries_so_far = start.retry_count_since_last_stored_entry if start else 0
    attempt = retries_so_far + 1
    if options.max_attempts is not None and attempt >= options.max_attempts:
        return _Retry(attempt, True, None)
    limit = options.max_duration or options.max_retry_duration
    if limit is not None:
        elapsed_ms = (start.duration_since_last_stored_entry if start else 0) + int(
            (time.monotonic() - started) * 1000
        )
        if elapsed_ms >= limit / timedelta(milliseconds=1):
            return _Retry(attempt, True, None)
    if options.initial_retry_interval is None:
        return _Retry(attempt, False, None)
    delay = options.initial_retry_interval / timedelta(milliseconds=1)
    delay *= (options.retry_interval_factor or 2.0) ** retries_so_far
    if options.max_retry_interval is not None:
        delay = min(delay, options.max_retry_interval / timedelta(milliseconds=1))
    return _Retry(attempt, False, max(0, int(delay)))


def _failure(error: TerminalError) -> Failure:
    metadata = [FailureMetadata(key=key, value=value) for key, value in error.metadata.items()]
    return Failure(code=error.status_code, message=error.message, metadata=metadata)


def _stacktrace(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def result_to_value(result: Result, serde: Serde[Any]) -> Any:
    """Turn a journal result into what the user's await returns (or raises)."""
    if isinstance(result, bytes):
        return serde.deserialize(result)
    if result is VOID:
        return None
    if isinstance(result, Failure):
        raise TerminalError(
            result.message,
            status_code=result.code,
            metadata={m.key: m.value for m in result.metadata} if result.metadata else None,
        )
    return result


def await_result(invocation: Invocation, key: Key) -> Generator[Any, None, Result]:
    """Yield to the event loop until ``key`` has a result, then return it."""
    result = invocation.machine.resolve_one(key)
    if result is None:
        yield from invocation.await_keys((key,))
        result = invocation.machine.result(key)
        assert result is not None
    return result
