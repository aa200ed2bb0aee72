"""The parts of the official SDK's surface that need no server: the Endpoint builder, the
attributes services expose, the exception tree, contextvar, the small helpers."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Optional

import anyio
import pytest
from starlette.testclient import TestClient

import framework
from framework import Context, SdkInternalBaseException, TerminalError, is_internal_exception
from framework._preview import explicit_recovery
from framework.client import HttpError, handler_from_callable
from framework.context import KeyValueStore, ObjectContext, ObjectSharedContext
from framework.context_managers import contextvar
from framework.endpoint import Endpoint
from framework.exceptions import SdkInternalException, SuspendedException
from framework.serde import DaciteFromDict, DaciteToDict, is_pydantic
from framework.service import ServiceTag
from framework.types import extract_core_type

pytestmark = pytest.mark.fast

MANIFEST_V4 = {"accept": "application/vnd.restate.endpointmanifest.v4+json"}


def test_the_endpoint_builder_serves_what_it_binds() -> None:
    greeter = framework.Service("Builder", description="greets")

    @greeter.handler()
    async def hello(ctx: Context, name: str) -> str:
        return name

    other = framework.VirtualObject("BuilderObject")

    @other.handler()
    async def poke(ctx: ObjectContext) -> None:
        return None

    endpoint = Endpoint().bind(greeter).bind(other).request_response_protocol()
    with pytest.raises(ValueError, match="bound already"):
        endpoint.bind(greeter)
    with TestClient(endpoint.app()) as client:
        manifest = client.get("/discover", headers=MANIFEST_V4).json()
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    assert [s["name"] for s in manifest["services"]] == ["Builder", "BuilderObject"]
    assert manifest["services"][0]["documentation"] == "greets"


def test_services_expose_the_official_attributes() -> None:
    svc = framework.VirtualObject(
        "Attributes",
        description="d",
        metadata={"team": "x"},
        inactivity_timeout=timedelta(seconds=3),
        enable_lazy_state=True,
    )

    @svc.handler(kind="shared")
    async def read(ctx: ObjectSharedContext, key: str) -> str:
        return key

    assert svc.service_tag == ServiceTag("object", "Attributes", "d", {"team": "x"})
    assert svc.inactivity_timeout == timedelta(seconds=3) and svc.enable_lazy_state is True
    assert svc.abort_timeout is None and svc.explicit_recovery is False
    handler = handler_from_callable(read)
    assert handler.name == "read" and handler.kind == "shared" and handler.arity == 2
    assert handler.service_tag == svc.service_tag
    with pytest.raises(TypeError, match="is not a handler"):
        handler_from_callable(len)
    assert explicit_recovery(svc) is svc and svc.explicit_recovery is True
    assert explicit_recovery(read) is read and handler.explicit_recovery is True
    assert issubclass(ObjectContext, KeyValueStore)


def test_the_exception_tree() -> None:
    for internal in (SuspendedException(), SdkInternalException()):
        assert isinstance(internal, SdkInternalBaseException)
        assert not isinstance(internal, Exception)  # `except Exception` lets it pass
        assert is_internal_exception(internal)
        assert "re-raise" in str(internal)
    assert not is_internal_exception(TerminalError("no"))
    error = HttpError(404, "not found", "body")
    assert str(error) == "HTTP 404: not found" and error.body == "body"


def test_contextvar_exposes_the_yielded_value_inside_only() -> None:
    @contextvar
    @asynccontextmanager
    async def session(name: str):  # type: ignore[no-untyped-def]
        yield f"session {name}"

    async def scenario() -> None:
        with pytest.raises(LookupError, match="not entered"):
            _ = session.value
        async with session("a") as yielded:
            assert yielded is None and session.value == "session a"
            async with session("b"):
                assert session.value == "session b"
            assert session.value == "session a"
        with pytest.raises(LookupError):
            _ = session.value

    anyio.run(scenario)


def test_small_helpers() -> None:
    assert extract_core_type(Optional[int]) == ("optional", int)  # noqa: UP045 - the point
    assert extract_core_type(int | None) == ("optional", int)
    assert extract_core_type(list[int]) == ("simple", list[int])

    @dataclasses.dataclass
    class Point:
        x: int
        label: str | None

    assert DaciteFromDict(Point, {"x": 1}) == Point(1, None)
    assert DaciteToDict(Point(1, "a")) == {"x": 1, "label": "a"}
    assert not is_pydantic(Point)
