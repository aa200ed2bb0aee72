"""The journal state machine of one invocation: bytes in, messages out, no I/O.

It bootstraps from StartMessage, buffers the replayed journal, matches each new command
against the next replayed one (570 on mismatch), hands out completion and signal ids,
records notifications as they arrive, and encodes whatever the invocation sends back.
The caller (the invocation driver) decides *when* to call it; this class never waits.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any, Final, TypeVar

from framework._protocol import (
    MESSAGE_TYPES,
    REQUESTED_ACK_FLAG,
    AttachInvocationCommandMessage,
    CallCommandMessage,
    ClearAllStateCommandMessage,
    ClearStateCommandMessage,
    CompleteAwakeableCommandMessage,
    CompletePromiseCommandMessage,
    EndMessage,
    ErrorMessage,
    Failure,
    FrameDecoder,
    Future,
    GetEagerStateCommandMessage,
    GetEagerStateKeysCommandMessage,
    GetLazyStateCommandMessage,
    GetLazyStateKeysCommandMessage,
    GetLazyStateKeysCompletionNotificationMessage,
    GetPromiseCommandMessage,
    Header,
    InputCommandMessage,
    Message,
    OneWayCallCommandMessage,
    OutputCommandMessage,
    PeekPromiseCommandMessage,
    ProposeRunCompletionAckMessage,
    ProposeRunCompletionMessage,
    ProtocolError,
    ProtocolVersion,
    RunCommandMessage,
    SendSignalCommandMessage,
    SetStateCommandMessage,
    SignalNotificationMessage,
    SleepCommandMessage,
    StartMessage,
    SuspensionMessage,
    decode_message,
    encode_frame,
    is_command,
    is_notification,
)

CommandT = TypeVar("CommandT", bound=Message)
# The commands whose result arrives as one completion notification.
_AwaitedCommand = (
    SleepCommandMessage
    | AttachInvocationCommandMessage
    | GetPromiseCommandMessage
    | PeekPromiseCommandMessage
    | CompletePromiseCommandMessage
)

# ErrorMessage.behavior (v7): what the server does with a failed attempt.
RETRY: Final = 0
PAUSE: Final = 1
FAIL: Final = 2

JOURNAL_MISMATCH: Final = 570
PROTOCOL_VIOLATION: Final = 571

# Completion ids start at 1 and signal ids below 17 are reserved for built-in signals
# (1 is CANCEL): awakeables take theirs from 17 up, as every Restate SDK does.
FIRST_COMPLETION_ID: Final = 1
FIRST_USER_SIGNAL_ID: Final = 17
CANCEL_SIGNAL_ID: Final = 1
AWAKEABLE_ID_PREFIX: Final = "sign_1"

# Combinator types of the v7 Future tree.
_FIRST_COMPLETED: Final = 1
_ALL_COMPLETED: Final = 2

# A notification's key: a completion id (> 0), a signal index negated (< 0), or the name of
# a named signal (str). One flat key space keeps the hot path (completion ids) allocation free.
Key = int | str
CANCEL_KEY: Final = -CANCEL_SIGNAL_ID


class _Void:
    """The result of a notification that carries no value (a fired timer, a missing key)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "VOID"


VOID: Final = _Void()

# What a completion or signal resolved to: bytes (a value), VOID, a Failure, an
# invocation id (str) or a list of state keys.
Result = bytes | _Void | Failure | str | list[bytes]


class JournalMismatch(BaseException):
    """The handler issued a command that differs from the one recorded in the journal.

    A BaseException so that a handler's ``except Exception`` cannot swallow it: the
    attempt must end with code 570 whatever the user code catches.
    """

    code = JOURNAL_MISMATCH

    def __init__(
        self, index: int, expected: Any, actual_type: int, actual_name: str, actual_target: str = ""
    ) -> None:
        self.index = index
        self.command_type = type(expected).TYPE
        self.command_name = _name_of(expected)
        super().__init__(
            f"journal mismatch at command #{index}: the journal recorded "
            f"{type(expected).__name__} named {self.command_name!r}{_target_of(expected)}, but "
            f"the handler now issued {_type_name(actual_type)} named {actual_name!r}"
            f"{actual_target}. Handler code must issue the same "
            "durable steps, in the same order and with the same names, on every attempt; to "
            "change a handler's steps, deploy it as a new service revision."
        )


def _name_of(command: Any) -> str:
    name = getattr(command, "name", None)
    if name is None:
        name = getattr(command, "entry_name", "")
    return str(name)


_CALLS: Final = (CallCommandMessage, OneWayCallCommandMessage)
# Commands whose key (state key, promise key, object key) must match on replay too.
_KEYED: Final = frozenset(
    cls for cls in MESSAGE_TYPES.values() if "key" in getattr(cls, "__struct_fields__", ())
)


def _target_of(command: Any) -> str:
    """ " to Service/handler" for calls, the key for state and promise commands, else ""."""
    service = getattr(command, "service_name", None)
    if service is None:
        key = getattr(command, "key", None)
        if isinstance(key, bytes):
            return f" for state key {key.decode('utf-8', 'replace')!r}"
        return f" for promise {key!r}" if isinstance(key, str) else ""
    key = f" (key {command.key!r})" if command.key else ""
    return f" to {service}/{command.handler_name}{key}"


def _type_name(type_id: int) -> str:
    cls = MESSAGE_TYPES.get(type_id)
    return cls.__name__ if cls is not None else f"message 0x{type_id:04x}"


def _result_of(message: Any) -> Result:
    """Pick the result out of any notification (they share field numbers, see the spec)."""
    value = getattr(message, "value", None)
    if value is not None:
        return bytes(value)
    failure = getattr(message, "failure", None)
    if failure is not None:
        return failure  # type: ignore[no-any-return]
    invocation_id = getattr(message, "invocation_id", None)
    if invocation_id:
        return str(invocation_id)
    keys = getattr(message, "state_keys", None)
    if keys is not None:
        return list(keys)
    return VOID


def _check_state_keys(keys: list[bytes] | None) -> None:
    """State keys are strings to every SDK: a key list must be UTF-8 throughout."""
    for key in keys or ():
        try:
            bytes(key).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                f"a state key in the journal is not UTF-8 ({exc.reason} at byte {exc.start} "
                f"of {len(key)})"
            ) from None


def _future_of(keys: tuple[Key, ...], *, require_all: bool) -> Future:
    future = Future(combinator_type=_ALL_COMPLETED if require_all else _FIRST_COMPLETED)
    _add_keys(future, keys)
    return future


def _add_keys(future: Future, keys: tuple[Key, ...]) -> None:
    for key in keys:
        if isinstance(key, str):
            future.waiting_named_signals.append(key)
        elif key < 0:
            future.waiting_signals.append(-key)
        else:
            future.waiting_completions.append(key)


def _dedupe(future: Future) -> None:
    future.waiting_completions = sorted(set(future.waiting_completions))
    future.waiting_signals = sorted(set(future.waiting_signals))
    future.waiting_named_signals = sorted(set(future.waiting_named_signals))


class StateMachine:
    """One invocation's journal, driven by the invocation driver."""

    __slots__ = (
        "_arrived",
        "_cancel_taken",
        "_decoder",
        "_explicit_recovery",
        "_next_completion_id",
        "_next_signal_id",
        "_outbox",
        "_partial_state",
        "_positions",
        "_proposed_runs",
        "_replay_cursor",
        "_replayed",
        "_results",
        "_revealed",
        "_state",
        "command_index",
        "input",
        "input_closed",
        "known_entries",
        "received_entries",
        "start",
        "version",
    )

    def __init__(
        self,
        version: ProtocolVersion,
        max_message_size: int = 32 * 1024 * 1024,
        *,
        explicit_recovery: bool = False,
    ) -> None:
        self.version = version
        # Explicit recovery (_preview.explicit_recovery): a retried or resumed attempt does not
        # replay the journal. It keeps the input, reads the current state, and journals every
        # command anew after the old entries, with ids above all of theirs (the server takes
        # them as new commands).
        self._explicit_recovery = explicit_recovery
        self._decoder = FrameDecoder(max_message_size)
        self.start: StartMessage | None = None
        self.input: InputCommandMessage | None = None
        self.known_entries = 0
        self.received_entries = 0
        self.input_closed = False
        # Recorded commands still to be re-issued, from _replay_cursor on (a list and a cursor:
        # a deque costs every invocation a 600-byte block, replaying or not).
        self._replayed: list[Message] = []
        self._replay_cursor = 0
        # Notifications are numbered in arrival (= journal) order and become visible to the
        # handler only as its awaits need them, oldest first: what it sees at each await
        # then depends on the journal alone, so replays take the same branches as the
        # first run did. Positions below _revealed are visible.
        self._results: dict[Key, Result] = {}
        self._positions: dict[Key, int] = {}
        self._arrived = 0
        self._revealed = 0
        self._cancel_taken = False
        self._proposed_runs: dict[int, Result] = {}
        self._next_completion_id = FIRST_COMPLETION_ID
        self._next_signal_id = FIRST_USER_SIGNAL_ID
        self._state: dict[str, bytes | None] = {}
        self._partial_state = True
        self._outbox: list[bytes] = []
        self.command_index = -1

    # --- input -------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed bytes of the request body; raises ProtocolError on anything malformed."""
        if self.input_closed:
            raise ProtocolError(f"{len(data)} bytes arrived after the request body had ended")
        decoder = self._decoder
        decoder.feed(data)
        while (frame := decoder.next_frame()) is not None:
            type_id, _flags, payload = frame
            self._on_message(type_id, decode_message(type_id, payload))

    def close_input(self) -> None:
        """The server closed its side of the stream: nothing more will arrive."""
        self._decoder.close()
        self.input_closed = True
        if not self.ready:
            raise ProtocolError(
                "the request ended before the journal was complete: expected "
                f"{self.known_entries} entries after StartMessage, got {self.received_entries}"
                if self.start is not None
                else "the request ended before StartMessage arrived"
            )

    @property
    def ready(self) -> bool:
        """StartMessage and every replayed entry have arrived: the handler may run."""
        return self.start is not None and self.received_entries >= self.known_entries

    def _on_message(self, type_id: int, message: Any) -> None:
        if self.start is None:
            if not isinstance(message, StartMessage):
                raise ProtocolError(f"expected StartMessage first, got {type(message).__name__}")
            self._bootstrap(message)
            return
        replaying = self.received_entries < self.known_entries
        if is_notification(type_id):
            if replaying:
                self.received_entries += 1
                if self._explicit_recovery:
                    self._reserve_ids_of(message)
            self._record_notification(message)
        elif is_command(type_id):
            if not replaying:
                raise ProtocolError(
                    f"received {type(message).__name__} after the replayed journal ended: "
                    "the server sends commands only while replaying"
                )
            self.received_entries += 1
            if self.input is None:
                if not isinstance(message, InputCommandMessage):
                    raise ProtocolError(
                        f"the journal starts with {type(message).__name__}: its first "
                        "command must be InputCommandMessage"
                    )
                self.input = message
                self.command_index = 0
                return
            kind = type(message)
            if kind is InputCommandMessage:
                raise ProtocolError("the journal holds a second InputCommandMessage")
            if kind is GetEagerStateKeysCommandMessage:
                _check_state_keys(message.value)
            if self._explicit_recovery:
                self._reserve_ids_of(message)  # kept in the journal, never matched again
                return
            self._replayed.append(message)
        elif isinstance(message, ProposeRunCompletionAckMessage):
            proposed = self._proposed_runs.pop(message.completion_id, None)
            if proposed is None:
                raise ProtocolError(
                    f"ProposeRunCompletionAck for completion {message.completion_id}, "
                    "which no run proposed"
                )
            self._complete(message.completion_id, proposed)
        elif type_id >= 0xFC00:
            # Custom entries are opaque to us; they still count as journal entries.
            if replaying:
                self.received_entries += 1
        else:
            raise ProtocolError(f"unexpected {type(message).__name__} from the server")

    def _bootstrap(self, start: StartMessage) -> None:
        self.start = start
        self.known_entries = start.known_entries
        self._state = {
            bytes(e.key).decode("utf-8", "replace"): bytes(e.value) for e in start.state_map
        }
        self._partial_state = start.partial_state

    def _reserve_ids_of(self, entry: Any) -> None:
        """Keep new completion and signal ids above those an old entry uses, so a new
        command never waits on an earlier attempt's notification."""
        for field in ("result_completion_id", "invocation_id_notification_idx", "completion_id"):
            value = getattr(entry, field, None)
            if isinstance(value, int) and value >= self._next_completion_id:
                self._next_completion_id = value + 1
        signal = getattr(entry, "idx", None)
        if isinstance(signal, int) and signal >= self._next_signal_id:
            self._next_signal_id = signal + 1

    def _record_notification(self, message: Any) -> None:
        if isinstance(message, GetLazyStateKeysCompletionNotificationMessage):
            _check_state_keys(message.state_keys)
        if isinstance(message, SignalNotificationMessage):
            key: Key = -message.idx if message.idx is not None else (message.name or "")
            self._complete(key, _result_of(message))
            return
        self._complete(message.completion_id, _result_of(message))

    def _complete(self, key: Key, result: Result) -> None:
        # The first notification for a key wins: the server never sends two, and a
        # duplicate must not change what the handler may already have seen.
        if key not in self._positions:
            self._results[key] = result
            self._positions[key] = self._arrived
            self._arrived += 1

    # --- what the driver asks ------------------------------------------------------------

    @property
    def replaying(self) -> bool:
        """True while the handler is still re-issuing commands recorded in the journal."""
        return self._replay_cursor < len(self._replayed)

    def _next_replayed(self) -> Message | None:
        """The next recorded command to match, or None once the replay is over."""
        replayed = self._replayed
        cursor = self._replay_cursor
        if cursor >= len(replayed):
            return None
        if cursor + 1 == len(replayed):
            self._replayed = []  # let the journal go once it has been replayed
            self._replay_cursor = 0
        else:
            self._replay_cursor = cursor + 1
        return replayed[cursor]

    def result(self, key: Key) -> Result | None:
        """The result of a notification the handler has reached, or None."""
        position = self._positions.get(key)
        if position is None or position >= self._revealed:
            return None
        return self._results[key]

    def received(self, key: Key) -> bool:
        """Whether the notification has arrived at all (reached by the handler or not)."""
        return key in self._positions

    @property
    def has_queued(self) -> bool:
        """Some notifications arrived that no await has reached yet."""
        return self._revealed < self._arrived

    def pop_notification(self) -> bool:
        """Make the oldest hidden notification visible; False when there is none."""
        if self._revealed >= self._arrived:
            return False
        self._revealed += 1
        return True

    def _visible(self, key: Key) -> bool:
        position = self._positions.get(key)
        return position is not None and position < self._revealed

    def satisfied(self, keys: tuple[Key, ...], require_all: bool, cancellable: bool) -> bool:
        """Whether an await on ``keys`` can return now (or a cancellation interrupts it)."""
        if cancellable and self.cancel_requested:
            return True
        visible = self._visible
        if require_all:
            return all(visible(key) for key in keys)
        return any(visible(key) for key in keys)

    def resolve(self, keys: tuple[Key, ...], require_all: bool, cancellable: bool) -> bool:
        """Reveal notifications, oldest first, until the await can return."""
        while not self.satisfied(keys, require_all, cancellable):
            if not self.pop_notification():
                return False
        return True

    def resolve_one(self, key: Key) -> Result | None:
        """``resolve`` for one key (cancellable): its result, or None if the await must
        wait or a cancellation comes first. The hot path of replay: O(1), no loop."""
        positions = self._positions
        position = positions.get(key)
        cancel = None if self._cancel_taken else positions.get(CANCEL_KEY)
        revealed = self._revealed
        if cancel is not None and (cancel < revealed or position is None or cancel < position):
            # The cancellation is (or, revealing in order, becomes) visible first.
            self._revealed = max(revealed, cancel + 1)
            return None
        if position is None:
            self._revealed = self._arrived
            return None
        if position >= revealed:
            self._revealed = position + 1
        return self._results[key]

    @property
    def cancel_requested(self) -> bool:
        """The CANCEL signal has been reached and not yet acted upon."""
        return not self._cancel_taken and self._visible(CANCEL_KEY)

    def take_cancel(self) -> None:
        """The handler acts on the cancellation now; later awaits are not interrupted."""
        self._cancel_taken = True

    @property
    def random_seed(self) -> int:
        start = self._started()
        if self.version >= ProtocolVersion.V6 and start.random_seed:
            return int(start.random_seed)
        # v5 carries no seed: derive a stable one from the invocation id.
        return int.from_bytes(hashlib.sha256(bytes(start.id)).digest()[:8], "big")

    def _started(self) -> StartMessage:
        if self.start is None:
            raise RuntimeError("the invocation has not started")
        return self.start

    # --- commands -------------------------------------------------------------------------

    def _command(self, command: CommandT) -> CommandT | None:
        """Journal one command: match it against the replay, or queue it for sending.

        Returns the replayed command when replaying (its recorded fields win), else None.
        """
        self.command_index += 1
        recorded = self._next_replayed()
        if recorded is not None:
            kind = type(command)
            if (
                type(recorded) is not kind
                or _name_of(recorded) != _name_of(command)
                or (
                    kind in _KEYED
                    and getattr(recorded, "key", None) != getattr(command, "key", None)
                )
                or (kind in _CALLS and _target_of(recorded) != _target_of(command))
            ):
                raise JournalMismatch(
                    self.command_index,
                    recorded,
                    type(command).TYPE,
                    _name_of(command),
                    _target_of(command),
                )
            return recorded
        self._outbox.append(encode_frame(command))
        return None

    def _next_completion(self) -> int:
        completion_id = self._next_completion_id
        self._next_completion_id += 1
        return completion_id

    def get_state(self, key: str) -> tuple[Result | None, int]:
        """Read a state key: (result, 0) when known now, else (None, completion id)."""
        self.command_index += 1
        recorded = self._next_replayed()
        if recorded is not None:
            if (
                isinstance(recorded, GetEagerStateCommandMessage | GetLazyStateCommandMessage)
                and bytes(recorded.key) != key.encode()
            ):
                raise JournalMismatch(
                    self.command_index, recorded, recorded.TYPE, "", f" for state key {key!r}"
                )
            if isinstance(recorded, GetEagerStateCommandMessage):
                return (bytes(recorded.value) if recorded.value is not None else VOID), 0
            if isinstance(recorded, GetLazyStateCommandMessage):
                self._next_completion_id = max(
                    self._next_completion_id, recorded.result_completion_id + 1
                )
                return self.result(recorded.result_completion_id), recorded.result_completion_id
            raise JournalMismatch(
                self.command_index,
                recorded,
                GetEagerStateCommandMessage.TYPE,
                "",
                f" for state key {key!r}",
            )
        encoded_key = key.encode()
        if key in self._state or not self._partial_state:
            value = self._state.get(key)
            eager = GetEagerStateCommandMessage(key=encoded_key, value=value, void=value is None)
            self._outbox.append(encode_frame(eager))
            return (value if value is not None else VOID), 0
        completion_id = self._next_completion()
        lazy = GetLazyStateCommandMessage(key=encoded_key, result_completion_id=completion_id)
        self._outbox.append(encode_frame(lazy))
        return None, completion_id

    def state_keys(self) -> tuple[list[bytes] | None, int]:
        """List state keys: (keys, 0) when known now, else (None, completion id)."""
        self.command_index += 1
        recorded = self._next_replayed()
        if recorded is not None:
            if isinstance(recorded, GetEagerStateKeysCommandMessage):
                return list(recorded.value or []), 0
            if isinstance(recorded, GetLazyStateKeysCommandMessage):
                cid = recorded.result_completion_id
                self._next_completion_id = max(self._next_completion_id, cid + 1)
                known = self.result(cid)
                return (known if isinstance(known, list) else None), cid
            raise JournalMismatch(
                self.command_index, recorded, GetEagerStateKeysCommandMessage.TYPE, ""
            )
        if not self._partial_state:
            keys = sorted(k.encode() for k, v in self._state.items() if v is not None)
            self._outbox.append(encode_frame(GetEagerStateKeysCommandMessage(value=keys)))
            return keys, 0
        completion_id = self._next_completion()
        self._outbox.append(
            encode_frame(GetLazyStateKeysCommandMessage(result_completion_id=completion_id))
        )
        return None, completion_id

    def set_state(self, key: str, value: bytes) -> None:
        self._command(SetStateCommandMessage(key=key.encode(), value=value))
        self._state[key] = value

    def clear_state(self, key: str) -> None:
        self._command(ClearStateCommandMessage(key=key.encode()))
        self._state[key] = None

    def clear_all_state(self) -> None:
        self._command(ClearAllStateCommandMessage())
        self._state = {}
        self._partial_state = False

    def run(self, name: str) -> tuple[bool, int]:
        """Journal a ctx.run: (whether its closure must execute, its completion id).

        A run whose outcome the journal already holds never executes again.
        """
        completion_id = self._next_completion()
        recorded = self._command(RunCommandMessage(result_completion_id=completion_id, name=name))
        if recorded is not None:
            completion_id = recorded.result_completion_id
            self._next_completion_id = max(self._next_completion_id, completion_id + 1)
        return completion_id not in self._positions, completion_id

    def propose_run(self, completion_id: int, result: bytes | Failure) -> None:
        """Propose a run's outcome; it counts once the server confirms it (ack or notification)."""
        if isinstance(result, Failure):
            proposal = ProposeRunCompletionMessage(
                result_completion_id=completion_id, failure=result
            )
        else:
            proposal = ProposeRunCompletionMessage(result_completion_id=completion_id, value=result)
        if self.version >= ProtocolVersion.V7:
            self._proposed_runs[completion_id] = result
            self._outbox.append(encode_frame(proposal, requested_ack=True))
        else:
            self._outbox.append(encode_frame(proposal))

    def _awaited_command(self, command: _AwaitedCommand) -> int:
        """Journal a command whose result arrives as a completion; returns its completion id
        (the journal's on replay)."""
        recorded = self._command(command)
        if recorded is None:
            return int(command.result_completion_id)
        completion_id = int(recorded.result_completion_id)
        self._next_completion_id = max(self._next_completion_id, completion_id + 1)
        return completion_id

    def sleep(self, wake_up_time_ms: int, name: str = "") -> int:
        """A durable timer firing at ``wake_up_time_ms`` (Unix ms); its completion id."""
        return self._awaited_command(
            SleepCommandMessage(
                wake_up_time=wake_up_time_ms,
                result_completion_id=self._next_completion(),
                name=name,
            )
        )

    def call(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        *,
        key: str = "",
        headers: list[Header] | None = None,
        idempotency_key: str | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> tuple[int, int]:
        """Call another handler: (the key of its invocation id, the key of its result)."""
        command = CallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            headers=headers or [],
            key=key,
            idempotency_key=idempotency_key,
            scope=scope,
            limit_key=limit_key,
            invocation_id_notification_idx=self._next_completion(),
            result_completion_id=self._next_completion(),
        )
        recorded = self._command(command) or command
        ids = recorded.invocation_id_notification_idx, recorded.result_completion_id
        self._next_completion_id = max(self._next_completion_id, max(ids) + 1)
        return ids

    def send(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        *,
        key: str = "",
        invoke_time_ms: int = 0,
        headers: list[Header] | None = None,
        idempotency_key: str | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> int:
        """Send to another handler (at ``invoke_time_ms``, 0 = now): the key of the new
        invocation's id."""
        command = OneWayCallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            invoke_time=invoke_time_ms,
            headers=headers or [],
            key=key,
            idempotency_key=idempotency_key,
            scope=scope,
            limit_key=limit_key,
            invocation_id_notification_idx=self._next_completion(),
        )
        recorded = self._command(command) or command
        notification_id = int(recorded.invocation_id_notification_idx)
        self._next_completion_id = max(self._next_completion_id, notification_id + 1)
        return notification_id

    def attach_invocation(self, invocation_id: str) -> int:
        """Wait for another invocation's result: its completion id."""
        return self._awaited_command(
            AttachInvocationCommandMessage(
                invocation_id=invocation_id, result_completion_id=self._next_completion()
            )
        )

    def get_promise(self, name: str) -> int:
        """A workflow promise's value, once resolved: its completion id."""
        return self._awaited_command(
            GetPromiseCommandMessage(key=name, result_completion_id=self._next_completion())
        )

    def peek_promise(self, name: str) -> int:
        """A workflow promise's value if resolved already (void if not): its completion id."""
        return self._awaited_command(
            PeekPromiseCommandMessage(key=name, result_completion_id=self._next_completion())
        )

    def complete_promise(self, name: str, outcome: bytes | Failure) -> int:
        """Resolve (bytes) or reject (Failure) a workflow promise: the completion id of the
        server's answer (a failure if it was completed already)."""
        command = CompletePromiseCommandMessage(
            key=name, result_completion_id=self._next_completion()
        )
        if isinstance(outcome, Failure):
            command.completion_failure = outcome
        else:
            command.completion_value = outcome
        return self._awaited_command(command)

    def complete_awakeable(self, awakeable_id: str, outcome: bytes | Failure) -> None:
        """Resolve (bytes) or reject (Failure) another invocation's awakeable."""
        if isinstance(outcome, Failure):
            self._command(
                CompleteAwakeableCommandMessage(awakeable_id=awakeable_id, failure=outcome)
            )
        else:
            self._command(CompleteAwakeableCommandMessage(awakeable_id=awakeable_id, value=outcome))

    def send_signal(
        self, target_invocation_id: str, signal: int | str, result: bytes | Failure | None
    ) -> None:
        """Deliver a signal (by index or name) to another invocation; None means void."""
        command = SendSignalCommandMessage(target_invocation_id=target_invocation_id)
        if isinstance(signal, str):
            command.name = signal
        else:
            command.idx = signal
        if result is None:
            command.void = True
        elif isinstance(result, Failure):
            command.failure = result
        else:
            command.value = result
        self._command(command)

    def cancel_invocation(self, target_invocation_id: str) -> None:
        self.send_signal(target_invocation_id, CANCEL_SIGNAL_ID, None)

    def next_completion_id(self) -> int:
        return self._next_completion()

    def awakeable_id(self, signal_id: int) -> str:
        """The id other invocations (or the ingress) use to complete an awakeable."""
        raw = bytes(self._started().id) + signal_id.to_bytes(4, "big")
        return AWAKEABLE_ID_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def next_signal_id(self) -> int:
        signal_id = self._next_signal_id
        self._next_signal_id += 1
        return signal_id

    # --- endings ----------------------------------------------------------------------------

    def write_output(self, value: bytes | Failure) -> None:
        if isinstance(value, Failure):
            self._command(OutputCommandMessage(failure=value))
        else:
            self._command(OutputCommandMessage(value=value))
        self._outbox.append(encode_frame(EndMessage()))

    def suspend(self, awaits: Iterable[tuple[tuple[Key, ...], bool]], cancellable: bool) -> None:
        """Tell the server to resume us once any of these awaits can make progress.

        ``awaits`` are (keys, require_all) pairs; ``cancellable`` adds the CANCEL signal
        until the handler has acted on one.
        """
        top = _future_of((), require_all=False)
        nested: list[Future] = []
        for keys, require_all in awaits:
            if require_all and len(keys) > 1:
                nested.append(_future_of(keys, require_all=True))
            else:
                _add_keys(top, keys)
        if cancellable and not self._cancel_taken:
            _add_keys(top, (CANCEL_KEY,))
        if self.version >= ProtocolVersion.V7:
            top.nested_futures = nested
            for future in (top, *nested):
                _dedupe(future)
            message = SuspensionMessage(awaiting_on=top)
        else:
            # v5/v6 know only "any of these": list every key; the server resumes us on the
            # first and we suspend again if an all-of await still misses some.
            for future in nested:
                _add_keys(top, (*future.waiting_completions,))
                _add_keys(top, tuple(-s for s in future.waiting_signals))
                _add_keys(top, (*future.waiting_named_signals,))
            _dedupe(top)
            message = SuspensionMessage(
                waiting_completions=top.waiting_completions,
                waiting_signals=top.waiting_signals,
                waiting_named_signals=top.waiting_named_signals,
            )
        self._outbox.append(encode_frame(message))

    def fail(
        self,
        code: int,
        message: str,
        stacktrace: str = "",
        *,
        next_retry_delay_ms: int | None = None,
        related: JournalMismatch | None = None,
        behavior: int = RETRY,
    ) -> None:
        """End this attempt with an ErrorMessage. The server retries the invocation, or on
        protocol v7 does what ``behavior`` asks: RETRY, PAUSE (until an operator resumes
        it) or FAIL (for good)."""
        error = ErrorMessage(
            code=code,
            message=message,
            stacktrace=stacktrace,
            next_retry_delay=next_retry_delay_ms,
            behavior=behavior if self.version >= ProtocolVersion.V7 else RETRY,
        )
        if related is not None:
            error.related_command_index = related.index
            error.related_command_name = related.command_name
            error.related_command_type = related.command_type
        elif self.command_index >= 0:
            error.related_command_index = self.command_index
        self._outbox.append(encode_frame(error))

    def take_output(self) -> bytes:
        """Everything encoded since the last call, ready for the response body."""
        if not self._outbox:
            return b""
        out = b"".join(self._outbox)
        self._outbox.clear()
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._outbox)


__all__ = [
    "CANCEL_KEY",
    "CANCEL_SIGNAL_ID",
    "FAIL",
    "JOURNAL_MISMATCH",
    "PAUSE",
    "PROTOCOL_VIOLATION",
    "REQUESTED_ACK_FLAG",
    "RETRY",
    "VOID",
    "JournalMismatch",
    "Key",
    "Result",
    "StateMachine",
]
