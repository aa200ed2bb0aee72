"""RestateSessionService: ADK sessions kept in the state of the VirtualObject whose
exclusive handler runs the agent, so a conversation lives with its object key.

Each session is one state entry for its metadata (ids, session state, last update, how many
events) plus one entry per event, so appending an event writes that event and the metadata,
not the whole history again. The object key is the default session id: one object key, one
conversation. ``app:`` and ``user:`` state is kept with the session like the rest (another
object key cannot read this key's state); ``temp:`` state is never stored.
"""

from __future__ import annotations

from typing import Any

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event
from google.adk.platform import time as platform_time
from google.adk.sessions import BaseSessionService, Session, State
from google.adk.sessions.base_session_service import GetSessionConfig, ListSessionsResponse
from pydantic import BaseModel

from framework._api.context import ObjectContext
from framework._api.extensions import get_extension_data, set_extension_data
from framework.ext._common import restate_object_context
from framework.ext.adk._determinism import make_deterministic
from framework.ext.adk._plugin import is_failure_event_content
from framework.ext.adk._serde import ModelSerde

_SESSION_PREFIX = "adk:session:"
_EVENT_PREFIX = "adk:event:"
_CACHE_KEY = "framework.ext.adk.sessions"


class _StoredSession(BaseModel):
    """A session's metadata entry."""

    id: str
    app_name: str
    user_id: str
    state: dict[str, Any]
    last_update_time: float
    event_count: int = 0


_SESSION_SERDE: ModelSerde[_StoredSession] = ModelSerde(_StoredSession)
_EVENT_SERDE: ModelSerde[Event] = ModelSerde(Event)


def _session_key(session_id: str) -> str:
    return f"{_SESSION_PREFIX}{session_id}"


def _event_key(session_id: str, index: int) -> str:
    return f"{_EVENT_PREFIX}{session_id}:{index}"


def _lasting(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if not key.startswith(State.TEMP_PREFIX)}


def _cache(ctx: ObjectContext) -> dict[str, _StoredSession | None]:
    """Metadata read in this attempt, so that each append does not read it again (every
    attempt fills it the same way, so the state reads it saves are the same each time)."""
    cache = get_extension_data(ctx, _CACHE_KEY)
    if not isinstance(cache, dict):
        cache = {}
        set_extension_data(ctx, _CACHE_KEY, cache)
    return cache


class RestateSessionService(BaseSessionService):
    """ADK's session service on the running VirtualObject's state (call it from an
    exclusive handler: it writes state)."""

    @property
    def ctx(self) -> ObjectContext:
        """The running exclusive handler's context, whose state holds the sessions."""
        return restate_object_context()

    async def _stored(self, ctx: ObjectContext, session_id: str) -> _StoredSession | None:
        cache = _cache(ctx)
        if session_id not in cache:
            stored = await ctx.get(_session_key(session_id), serde=_SESSION_SERDE)
            cache[session_id] = stored
        return cache[session_id]

    def _store(self, ctx: ObjectContext, stored: _StoredSession) -> None:
        ctx.set(_session_key(stored.id), stored, serde=_SESSION_SERDE)
        _cache(ctx)[stored.id] = stored

    async def has_session(self, session_id: str) -> bool:
        """Whether this object's state holds a session with this id."""
        return await self._stored(self.ctx, session_id) is not None

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        ctx = self.ctx
        await make_deterministic(ctx)
        session_id = (session_id or "").strip() or ctx.key()
        if await self._stored(ctx, session_id) is not None:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        stored = _StoredSession(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=_lasting(state or {}),
            last_update_time=platform_time.get_time(),
        )
        self._store(ctx, stored)
        return Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=dict(stored.state),
            last_update_time=stored.last_update_time,
        )

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        ctx = self.ctx
        # The runner asks for the session first of all: from here on ADK's ids and
        # timestamps (the invocation id, the user's event) are the same on every attempt.
        await make_deterministic(ctx)
        stored = await self._stored(ctx, session_id.strip())
        if stored is None or stored.app_name != app_name or stored.user_id != user_id:
            return None
        first = 0
        if config is not None and config.num_recent_events is not None:
            first = max(0, stored.event_count - config.num_recent_events)
        events: list[Event] = []
        for index in range(first, stored.event_count):
            event = await ctx.get(_event_key(stored.id, index), serde=_EVENT_SERDE)
            if event is not None:
                events.append(event)
        if config is not None and config.after_timestamp is not None:
            after = config.after_timestamp
            events = [event for event in events if event.timestamp >= after]
        return Session(
            id=stored.id,
            app_name=stored.app_name,
            user_id=stored.user_id,
            state=dict(stored.state),
            events=events,
            last_update_time=stored.last_update_time,
        )

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        ctx = self.ctx
        sessions: list[Session] = []
        for key in await ctx.state_keys():
            if not key.startswith(_SESSION_PREFIX):
                continue
            stored = await self._stored(ctx, key[len(_SESSION_PREFIX) :])
            if stored is None or stored.app_name != app_name:
                continue
            if user_id is not None and stored.user_id != user_id:
                continue
            sessions.append(
                Session(
                    id=stored.id,
                    app_name=stored.app_name,
                    user_id=stored.user_id,
                    state=dict(stored.state),
                    last_update_time=stored.last_update_time,
                )
            )
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        ctx = self.ctx
        stored = await self._stored(ctx, session_id.strip())
        if stored is None or stored.app_name != app_name or stored.user_id != user_id:
            return
        for index in range(stored.event_count):
            ctx.clear(_event_key(stored.id, index))
        ctx.clear(_session_key(stored.id))
        _cache(ctx)[stored.id] = None

    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial or is_failure_event_content(event.content):
            # Partial chunks are not history; nor is the stand-in call that ends a run
            # with a failed step.
            return event
        ctx = self.ctx
        stored = await self._stored(ctx, session.id)
        if stored is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        event = await super().append_event(session=session, event=event)
        session.last_update_time = event.timestamp
        ctx.set(_event_key(stored.id, stored.event_count), event, serde=_EVENT_SERDE)
        stored.event_count += 1
        await self.flush_session_state(session)
        return event

    async def flush_session_state(self, session: Session) -> None:
        """Write ``session.state`` (without ``temp:`` keys) and its last update time to the
        object's state; ``append_event`` does it after every event, call it yourself after
        changing ``session.state`` outside an event."""
        ctx = self.ctx
        stored = await self._stored(ctx, session.id)
        if stored is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        stored.state = _lasting(session.state)
        stored.last_update_time = max(stored.last_update_time, session.last_update_time)
        self._store(ctx, stored)
