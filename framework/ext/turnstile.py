"""A deterministic order for concurrent work: each participant waits for its turn, given by
an ordered list of ids, before doing what must be journaled in that order.

A model may ask for several tool calls at once; run concurrently, their durable steps would
reach the journal in whatever order the event loop happens to pick, and a replay taking
another order would not match. With a turnstile over the calls' ids (in the model's order),
each tool waits for ``wait_for(its id)``, journals its step, then ``allow_next_after(its
id)``: the journal order is the model's, run after run, while the steps still overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from framework.exceptions import TerminalError

__all__ = ["Turnstile"]


class Turnstile:
    """Admits ``ids`` one at a time, in their order."""

    __slots__ = ("_cancelled_from", "_gates", "_order")

    def __init__(self, ids: Iterable[str]) -> None:
        self._order = list(ids)
        if len(set(self._order)) != len(self._order):
            raise ValueError("a Turnstile needs distinct ids")
        self._gates = {id_: asyncio.Event() for id_ in self._order}
        self._cancelled_from: int | None = None  # ids from this position on are cancelled
        if self._order:
            self._gates[self._order[0]].set()

    def _position(self, id_: str) -> int:
        try:
            return self._order.index(id_)
        except ValueError:
            raise KeyError(f"{id_!r} is not one of this Turnstile's ids") from None

    async def wait_for(self, id: str) -> None:
        """Return once it is ``id``'s turn; raise TerminalError(409) if it was cancelled."""
        position = self._position(id)
        await self._gates[id].wait()
        if self._cancelled_from is not None and position >= self._cancelled_from:
            raise TerminalError(f"cancelled before its turn: {id}", status_code=409)

    def allow_next_after(self, id: str) -> None:
        """``id`` is done with its ordered part: let the next id in."""
        position = self._position(id)
        if position + 1 < len(self._order):
            self._gates[self._order[position + 1]].set()

    def cancel_all_after(self, id: str) -> None:
        """Every id after ``id`` fails its ``wait_for`` (e.g. ``id`` failed for good)."""
        self._cancel_from(self._position(id) + 1)

    def cancel_all(self) -> None:
        """Every id still waiting (or yet to wait) fails its ``wait_for``."""
        self._cancel_from(0)

    def _cancel_from(self, position: int) -> None:
        if self._cancelled_from is None or position < self._cancelled_from:
            self._cancelled_from = position
        for id_ in self._order[position:]:
            self._gates[id_].set()
