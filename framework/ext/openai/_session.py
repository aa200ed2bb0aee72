"""A conversation history kept in a virtual object's state: an ``agents`` Session for the
object key the handler runs on, read and written through the handler's ObjectContext."""

from __future__ import annotations

from typing import Any

from agents import SessionSettings, TResponseInputItem
from pydantic import TypeAdapter

from framework.ext._common import restate_object_context

STATE_KEY = "openai_agents_session"

_ITEMS: TypeAdapter[list[Any]] = TypeAdapter(list[Any])


class RestateSession:
    """The conversation of one virtual object key, stored under one state entry.

    The exclusive handler owns the key's state while it runs, so the items are read once
    per attempt and then kept here; each change writes the whole list back (a journaled
    state write, replayed like any other).
    """

    session_settings: SessionSettings | None = None

    def __init__(self, state_key: str = STATE_KEY) -> None:
        self._ctx = restate_object_context()
        self.session_id = self._ctx.key()
        self._state_key = state_key
        self._items: list[TResponseInputItem] | None = None

    async def _load(self) -> list[TResponseInputItem]:
        if self._items is None:
            stored: list[Any] | None = await self._ctx.get(self._state_key, type_hint=list)
            self._items = list(stored or [])
        return self._items

    def _store(self, items: list[TResponseInputItem]) -> None:
        self._items = items
        self._ctx.set(self._state_key, items)

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        items = await self._load()
        if limit is None:
            return list(items)
        return list(items[-limit:]) if limit > 0 else []

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        current = await self._load()
        # Items may hold pydantic models; the state holds their JSON form (the fields they
        # set, by their aliases), which is what a read returns.
        added = _ITEMS.dump_python(items, mode="json", by_alias=True, exclude_unset=True)
        self._store([*current, *added])

    async def pop_item(self) -> TResponseInputItem | None:
        current = await self._load()
        if not current:
            return None
        *rest, last = current
        self._store(rest)
        return last

    async def clear_session(self) -> None:
        await self._load()
        self._items = []
        self._ctx.clear(self._state_key)
