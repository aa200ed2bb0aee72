"""Apps for the endpoint tests (request identity, lifespan, mounting), served in child processes.

- ``signed_app``: checks request identity against ``$FRAMEWORK_TEST_IDENTITY_KEY``.
- ``mounted_signed_app``: the same check, mounted at ``/restate`` inside a Starlette app.
- ``mounted_app``: a plain app mounted at ``/restate`` inside a Starlette app.
- ``lifespan_app``: its lifespan hook appends ``startup``/``shutdown`` to
  ``$FRAMEWORK_TEST_DIR/lifespan.log``; ``failing_lifespan_app``'s hook raises on startup.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from framework import Context, RestateApp, Service, app


def _greeter(name: str) -> Service:
    service = Service(name)

    @service.handler()
    async def greet(ctx: Context, who: str) -> str:
        return f"hello {who} from {name}"

    return service


async def _home(request: Any) -> PlainTextResponse:
    return PlainTextResponse("the rest of the site")


def _site(restate_app: RestateApp) -> Starlette:
    """A bigger Starlette app with the Restate endpoint under /restate."""
    return Starlette(routes=[Route("/", _home), Mount("/restate", app=restate_app)])


mounted_app = _site(app([_greeter("MountedGreeter")]))


def _ledger(line: str) -> None:
    directory = Path(os.environ["FRAMEWORK_TEST_DIR"])
    with (directory / "lifespan.log").open("a") as f:
        f.write(line + "\n")


@asynccontextmanager
async def _hooks(restate_app: RestateApp) -> AsyncIterator[None]:
    _ledger(f"startup {sorted(restate_app.services)}")
    yield
    _ledger("shutdown")


@asynccontextmanager
async def _failing_hooks(restate_app: RestateApp) -> AsyncIterator[None]:
    raise RuntimeError("the database is not there")
    yield


lifespan_app = app([_greeter("LifespanGreeter")], lifespan=_hooks)
failing_lifespan_app = app([_greeter("FailingLifespanGreeter")], lifespan=_failing_hooks)


def __getattr__(name: str) -> Any:
    # Built on first use: they need the key from the environment.
    key = os.environ.get("FRAMEWORK_TEST_IDENTITY_KEY", "")
    if name == "signed_app":
        return app([_greeter("SignedGreeter")], identity_keys=[key])
    if name == "mounted_signed_app":
        return _site(app([_greeter("MountedSignedGreeter")], identity_keys=[key]))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
