"""Replay checks: run new handler code against journals a real Restate server recorded, with
no server and no side effects, and say where the code no longer matches.

A journal comes from the admin API (``sys_journal``: each entry's protocol message as hex,
``sys_invocation``: its target, status and protocol version) or from a file written by
``export``. Replaying feeds it to the journal state machine as the server would, closes the
stream, and runs the handler: every command is matched against the recorded one, results
come from the journal, and the first command past the recorded end stops the handler
before anything leaves the process (no ``ctx.run`` closure runs, no call is sent).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from framework._api.dispatch import run_handler
from framework._api.services import Handler
from framework._dev.admin import AdminClient, sql_text
from framework._endpoint.app import RestateApp
from framework._journal import RETRY, JournalMismatch, StateMachine
from framework._protocol import (
    MESSAGE_TYPES,
    ProtocolVersion,
    StartMessage,
    decode_message,
    encode_frame,
    is_command,
)
from framework._runtime.invocation import Invocation
from framework._runtime.options import RunOptions
from framework.serde import Serde

_FRAMEWORK_DIR = str(Path(__file__).resolve().parents[1])


class RecordedEntry(msgspec.Struct, frozen=True):
    """One journal entry as the server stores it."""

    index: int
    entry_type: str  # e.g. "Command: Run", "Notification: Run"
    name: str
    raw: str  # the entry's protocol message, hex


class RecordedInvocation(msgspec.Struct, frozen=True):
    """An invocation's journal and what it needs to be replayed."""

    id: str
    service: str
    handler: str
    key: str
    status: str
    protocol_version: int
    entries: list[RecordedEntry]

    @property
    def target(self) -> str:
        key = f"/{self.key}" if self.key else ""
        return f"{self.service}{key}/{self.handler}"


Outcome = Literal["ok", "mismatch", "diverges", "not-replayable"]


@dataclass(frozen=True)
class ReplayReport:
    """What replaying one recorded invocation with the current code showed."""

    invocation: RecordedInvocation
    outcome: Outcome
    detail: str = ""
    index: int | None = None  # the mismatching command's position in the journal
    source: str = ""  # "file:line" of the handler code that issued the other command

    @property
    def failed(self) -> bool:
        return self.outcome in ("mismatch", "not-replayable")

    def __str__(self) -> str:
        head = f"{self.invocation.id} {self.invocation.target}: {self.outcome}"
        if self.outcome == "ok":
            return head
        where = f" (at {self.source})" if self.source else ""
        entry = f" [journal entry {self.index}]" if self.index is not None else ""
        return f"{head}{entry}: {self.detail}{where}"


# --- turning stored entries back into frames -------------------------------------------------


def _entry_types() -> dict[str, int]:
    """``sys_journal.entry_type`` -> protocol message type id, from our message names."""
    table: dict[str, int] = {}
    for type_id, cls in MESSAGE_TYPES.items():
        name = cls.__name__
        for suffix, kind in (
            ("CompletionNotificationMessage", "Notification"),
            ("NotificationMessage", "Notification"),
            ("CommandMessage", "Command"),
        ):
            if name.endswith(suffix):
                table[f"{kind}: {name[: -len(suffix)]}"] = type_id
                break
    return table


_ENTRY_TYPES = _entry_types()


def _frames(recorded: RecordedInvocation) -> tuple[bytes, int]:
    """The request body the server would send (StartMessage first) and the number of
    commands in it."""
    body = bytearray()
    commands = 0
    for entry in recorded.entries:
        type_id = _ENTRY_TYPES.get(entry.entry_type)
        if type_id is None:
            raise ValueError(
                f"journal entry #{entry.index} is a {entry.entry_type!r}, which this version "
                "of framework cannot replay"
            )
        message = decode_message(type_id, bytes.fromhex(entry.raw))
        body += encode_frame(message)
        commands += is_command(type_id)
    start = StartMessage(
        id=recorded.id.encode(),
        debug_id=recorded.id,
        known_entries=len(recorded.entries),
        partial_state=True,
        key=recorded.key,
    )
    return encode_frame(start) + bytes(body), commands


# --- replaying ------------------------------------------------------------------------------


class _PastTheJournal(Exception):
    """The handler tried to execute a step the recorded journal has no result for."""


class _ReplayOnly(Invocation):
    """An attempt that may only replay: a step to execute for real stops it, a mismatch is
    kept for the report."""

    mismatch: JournalMismatch | None = None
    step_past_the_end: str | None = None

    def start_run(
        self,
        completion_id: int,
        name: str,
        action: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: RunOptions[Any],
        serde: Serde[Any],
    ) -> None:
        # Never run the closure: this is where the recorded journal ends.
        self.step_past_the_end = name
        self.end_attempt(0, f"ctx.run {name!r} would execute: the recorded journal ends here")

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
        if related is not None:
            self.mismatch = related
        super().end_attempt(
            code,
            message,
            stacktrace,
            next_retry_delay_ms=next_retry_delay_ms,
            related=related,
            behavior=behavior,
        )


def _user_line(error: BaseException) -> str:
    """Where in the user's code (not framework's) ``error`` was raised from."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if not frame.filename.startswith(_FRAMEWORK_DIR):
            return f"{frame.filename}:{frame.lineno}"
    return ""


async def replay(app: RestateApp, recorded: RecordedInvocation) -> ReplayReport:
    """Replay ``recorded`` through ``app``'s handler of that target: ``ok``, ``mismatch``
    (where and why), ``diverges`` (the new code goes on past the recorded journal's end,
    which is fine for an invocation still in flight), or ``not-replayable``."""
    service = app.services.get(recorded.service)
    handler: Handler | None = None if service is None else service.handlers.get(recorded.handler)
    if handler is None:
        return ReplayReport(
            recorded,
            "not-replayable",
            f"the app has no handler {recorded.service}/{recorded.handler} (removed or renamed?)",
        )
    try:
        version = ProtocolVersion(recorded.protocol_version)
        body, recorded_commands = _frames(recorded)
    except ValueError as error:
        return ReplayReport(recorded, "not-replayable", str(error))
    machine = StateMachine(version, app.max_message_size)
    machine.receive(body)
    machine.close_input()
    sent = bytearray()

    async def collect(data: bytes) -> None:
        sent.extend(data)  # what a live attempt would send; nothing leaves the process

    invocation = _ReplayOnly(machine, collect, f"{recorded.service}/{recorded.handler}")
    invocation.on_input()
    codec = await app.codec.get() if app.codec is not None else None
    # The attempt logs its own end (a mismatch, a suspension): the report says it better.
    quiet = logging.getLogger("framework")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await invocation.run(lambda: run_handler(handler, invocation, {}, codec))
    finally:
        quiet.setLevel(level)
    mismatch = invocation.mismatch
    if mismatch is not None:
        entry = _command_entry(recorded, mismatch.index)
        return ReplayReport(
            recorded,
            "mismatch",
            _first_sentence(str(mismatch)),
            index=entry.index if entry is not None else None,
            source=_user_line(mismatch),
        )
    if invocation.step_past_the_end is not None:
        return ReplayReport(
            recorded,
            "diverges",
            f"diverges after the end of the recorded journal (ctx.run "
            f"{invocation.step_past_the_end!r} has no recorded result)",
        )
    if machine.command_index > recorded_commands:
        return ReplayReport(recorded, "diverges", "diverges after the end of the recorded journal")
    return ReplayReport(recorded, "ok")


def _command_entry(recorded: RecordedInvocation, command_index: int) -> RecordedEntry | None:
    """The journal entry of the ``command_index``-th command (counted from 0, Input first)."""
    seen = -1
    for entry in recorded.entries:
        if entry.entry_type.startswith("Command:"):
            seen += 1
            if seen == command_index:
                return entry
    return None


def _first_sentence(text: str) -> str:
    # The mismatch explains how to fix it at length; the report keeps what happened.
    return text.split(". Handler code must", 1)[0]


# --- fetching and storing journals -----------------------------------------------------------

_SINCE = re.compile(r"^(\d+)\s*([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Status = Literal["running", "completed", "all"]


def fetch(
    admin: AdminClient,
    *,
    service: str | None = None,
    handler: str | None = None,
    status: Status = "all",
    since: str | None = None,
    limit: int | None = None,
    invocation_ids: Sequence[str] = (),
) -> list[RecordedInvocation]:
    """Recorded journals from a restate-server's admin API (newest first)."""
    where = ["pinned_service_protocol_version IS NOT NULL"]
    if service:
        where.append(f"target_service_name = {sql_text(service)}")
    if handler:
        where.append(f"target_handler_name = {sql_text(handler)}")
    if status == "completed":
        where.append("status = 'completed'")
    elif status == "running":
        where.append("status != 'completed'")
    if since:
        match = _SINCE.match(since.strip())
        if match is None:
            raise ValueError(f"--since {since!r}: write a duration such as 30m, 1h or 2d")
        seconds = int(match.group(1)) * _SECONDS[match.group(2)]
        where.append(f"created_at > now() - interval '{seconds} seconds'")
    if invocation_ids:
        where.append(f"id IN ({', '.join(sql_text(i) for i in invocation_ids)})")
    sql = (
        "SELECT id, target_service_name, target_service_key, target_handler_name, status, "
        "pinned_service_protocol_version FROM sys_invocation WHERE "
        + " AND ".join(where)
        + " ORDER BY created_at DESC"
        + (f" LIMIT {int(limit)}" if limit else "")
    )
    invocations = admin.query(sql)
    if not invocations:
        return []
    ids = ", ".join(sql_text(row["id"]) for row in invocations)
    entries: dict[str, list[RecordedEntry]] = {}
    for row in admin.query(
        f"SELECT id, index, entry_type, name, raw FROM sys_journal WHERE id IN ({ids}) "
        "AND version = 2 ORDER BY id, index"
    ):
        kind = str(row["entry_type"])
        if not kind.startswith(("Command:", "Notification:")):
            continue  # events (transient errors...) are not part of what the SDK replays
        entries.setdefault(row["id"], []).append(
            RecordedEntry(
                index=int(row["index"]),
                entry_type=kind,
                name=str(row.get("name") or ""),
                raw=str(row.get("raw") or ""),
            )
        )
    return [
        RecordedInvocation(
            id=row["id"],
            service=row["target_service_name"],
            handler=row["target_handler_name"],
            key=row.get("target_service_key") or "",
            status=row["status"],
            protocol_version=int(row["pinned_service_protocol_version"]),
            entries=entries.get(row["id"], []),
        )
        for row in invocations
        if row["id"] in entries
    ]


def export(journals: Iterable[RecordedInvocation], directory: Path) -> list[Path]:
    """Write each journal to ``directory/<invocation id>.json`` (CI fixtures)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for journal in journals:
        path = directory / f"{journal.id}.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(journal)))
        written.append(path)
    return written


def load(directory: Path) -> list[RecordedInvocation]:
    """The journals ``export`` wrote to ``directory``."""
    decoder = msgspec.json.Decoder(RecordedInvocation)
    return [decoder.decode(path.read_bytes()) for path in sorted(directory.glob("*.json"))]


async def replay_all(app: RestateApp, journals: Iterable[RecordedInvocation]) -> list[ReplayReport]:
    """Replay each journal in turn (each in a fresh task, as the endpoint would)."""
    reports = []
    for journal in journals:
        reports.append(await asyncio.ensure_future(replay(app, journal)))
    return reports


def run_check(
    app_ref: str,
    *,
    admin_url: str | None,
    service: str | None = None,
    handler: str | None = None,
    status: Status = "all",
    since: str | None = None,
    limit: int | None = None,
    export_to: Path | None = None,
    from_dir: Path | None = None,
) -> int:
    """``python -m framework replay``: print a line per invocation; 1 if any mismatch."""
    from framework._server.common import load_app

    app = load_app(app_ref)
    if not isinstance(app, RestateApp):
        print(f"error: {app_ref} is not an app made by framework.app()", file=sys.stderr)
        return 2
    if from_dir is not None:
        journals = load(from_dir)
        source = str(from_dir)
    else:
        assert admin_url is not None
        journals = fetch(
            AdminClient(admin_url),
            service=service,
            handler=handler,
            status=status,
            since=since,
            limit=limit,
        )
        source = admin_url
    if export_to is not None:
        export(journals, export_to)
        print(f"wrote {len(journals)} journals to {export_to}")
    reports = asyncio.run(replay_all(app, journals))
    for report in reports:
        print(report, flush=True)
    failed = sum(report.failed for report in reports)
    diverging = sum(report.outcome == "diverges" for report in reports)
    print(
        f"{len(reports)} journals from {source}: {len(reports) - failed - diverging} ok, "
        f"{diverging} going on past their recorded end, {failed} not matching"
    )
    return 1 if failed else 0
