"""``HarnessEnvironment``: what a test gets from the harness, and the admin calls it offers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from framework._dev.admin import AdminClient
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.testing.state import ObjectState, object_name

if TYPE_CHECKING:
    from framework.client import RestateClient

__all__ = ["HarnessEnvironment"]


@dataclass
class HarnessEnvironment:
    """What a test gets from the harness: where the server is and a client of its ingress."""

    ingress_url: str
    """The URL of the Restate ingress (``http://127.0.0.1:PORT``)."""

    admin_api_url: str
    """The URL of the Restate admin API."""

    client: RestateClient
    """An ingress client (``framework.client.RestateClient``) ready to use."""

    server: RestateServer | None = None
    """The running ``RestateServer`` (its log, ``query`` on the admin API...)."""

    deployment_url: str | None = None
    """Where the app is served (what was registered)."""

    service: ServiceProcess | None = field(default=None, repr=False)
    """The child process serving the app, when it was given as ``"module:attribute"``
    (``kill()`` and ``start()`` it to test crashes)."""

    @property
    def admin_url(self) -> str:
        """The same as ``admin_api_url``."""
        return self.admin_api_url

    def _admin(self) -> AdminClient:
        # The server's own client quotes its log when it cannot be reached.
        return self.server.admin if self.server is not None else AdminClient(self.admin_api_url)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """Run SQL on the admin API (``sys_invocation``, ``sys_journal``, ``state``...).

        Each row has every selected column, in select order, with None for SQL NULL.
        """
        return await asyncio.to_thread(self._admin().query, sql)

    async def invocation(self, invocation_id: str) -> dict[str, Any] | None:
        """The ``sys_invocation`` row of an invocation, or None: ``status`` ("running",
        "backing-off", "completed"...), ``retry_count``, ``last_failure`` (e.g. "[570 Journal
        mismatch] ..."), ``last_failure_error_code`` (e.g. "RT0016"), ``completion_result``
        ("success"/"failure") and ``completion_failure`` (e.g. "[500] ...")."""
        if not invocation_id.startswith("inv_") or "'" in invocation_id:
            raise ValueError(f"not an invocation id: {invocation_id!r}")
        rows = await self.query(
            "SELECT id, target, status, retry_count, last_failure, last_failure_error_code, "
            "completion_result, completion_failure FROM sys_invocation "
            f"WHERE id = '{invocation_id}'"
        )
        return rows[0] if rows else None

    async def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel an invocation through the admin API (its handler sees ``TerminalError`` 409).

        Raises ``RestateServerError`` with the server's message if it refuses.
        """
        await asyncio.to_thread(self._admin().cancel_invocation, invocation_id)

    def state_of(self, target: Any, key: str) -> ObjectState:
        """The state of the object (or workflow) ``key`` of ``target`` (a VirtualObject or
        Workflow, one of its handlers, or its name): ``await state.get(name)``,
        ``set``, ``get_all``, ``set_all``, ``clear``; e.g. to seed an object before a test
        calls it."""
        return ObjectState(
            self._admin(), object_name(target), key, getattr(self.client, "_codec", None)
        )

    async def restart_as_new(
        self, invocation_id: str, *, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        """Start a completed invocation again as a new one, from its input (or keeping its
        journal up to entry ``from_index``); the new invocation's id. ``deployment``: a
        deployment id, ``"latest"`` or ``"keep"`` (with ``from_index``)."""
        return await asyncio.to_thread(
            self._admin().restart_as_new,
            invocation_id,
            from_index=from_index,
            deployment=deployment,
        )

    async def kill_invocation(self, invocation_id: str) -> None:
        """Kill an invocation through the admin API (no compensation runs).

        Raises ``RestateServerError`` with the server's message if it refuses.
        """
        await asyncio.to_thread(self._admin().kill_invocation, invocation_id)
