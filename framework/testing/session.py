"""``HarnessSession``: one restate-server for a whole test session, and the apps served on it
(what the pytest plugin's fixtures hand out)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from framework._dev.restate_server import RestateServer
from framework.testing.environment import HarnessEnvironment
from framework.testing.serving import AppLike, ServedApp, register_app
from framework.testing.settings import (
    CLIENT_TIMEOUT,
    SERVER_START_TIMEOUT,
    STOP_TIMEOUT,
    harness_server_env,
)

__all__ = ["HarnessSession"]


class HarnessSession:
    """One restate-server shared by a test session, and the apps served against it.

    Each app (an ASGI app object, or a ``"module:attribute"`` string) is served and registered
    once, the first time a test asks for it; everything stops when the session ends.
    """

    def __init__(
        self,
        *,
        always_replay: bool = False,
        disable_retries: bool = False,
        server_env: Mapping[str, str] | None = None,
        enable_protocol_v7: bool = False,
        log_path: Path | None = None,
        server: RestateServer | None = None,
    ) -> None:
        """``server``: a RestateServer the suite already runs, to use instead of starting one
        (the other settings are then ignored, and ``stop`` leaves it running)."""
        self._own_server = server is None
        self.server = server or RestateServer(
            enable_protocol_v7=enable_protocol_v7,
            env=harness_server_env(
                always_replay=always_replay, disable_retries=disable_retries, extra=server_env
            ),
            log_path=log_path,
        )
        self._apps: dict[Any, tuple[AppLike, ServedApp]] = {}

    def start(self) -> None:
        """Start the session's server (a server handed in is started only if it is not)."""
        if self._own_server or not self.server.running():
            self.server.start(SERVER_START_TIMEOUT)

    def environment(
        self,
        app: AppLike,
        *,
        service_env: Mapping[str, str] | None = None,
        use_http_11: bool = False,
        client_timeout: float | None = CLIENT_TIMEOUT,
    ) -> HarnessEnvironment:
        """Serve ``app`` (once per session) against the server; an environment whose client
        opens a connection per request, so it works from any event loop."""
        from framework.client import RestateClient

        identity = app if isinstance(app, str) else id(app)
        cache_key = (identity, tuple(sorted((service_env or {}).items())))
        entry = self._apps.get(cache_key)
        if entry is None:
            served = ServedApp(app, service_env)
            log_dir = self.server.log_path.parent if self.server.log_path else None
            if log_dir is not None and isinstance(app, str):
                log_dir = log_dir / f"service-{len(self._apps)}"
                log_dir.mkdir(parents=True, exist_ok=True)
            try:
                served.start(log_dir)
                register_app(self.server, served.url, use_http_11)
            except BaseException:
                served.stop()
                raise
            entry = (app, served)  # the app is kept alive, so its id() stays unique
            self._apps[cache_key] = entry
        served = entry[1]
        return HarnessEnvironment(
            ingress_url=self.server.ingress_url,
            admin_api_url=self.server.admin_url,
            client=RestateClient(self.server.ingress_url, timeout=client_timeout),
            server=self.server,
            deployment_url=served.url,
            service=served.process,
        )

    def stop(self) -> None:
        """Stop every app served, then the server (unless it was handed in)."""
        for _, served in reversed(list(self._apps.values())):
            served.stop()
        self._apps.clear()
        if self._own_server:
            self.server.stop(STOP_TIMEOUT)
