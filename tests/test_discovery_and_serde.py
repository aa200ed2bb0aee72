"""Discovery manifests (v2..v4, options, errors) and the default serde's choices."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import msgspec
import pytest
from starlette.testclient import TestClient

from framework import (
    Context,
    DefaultSerde,
    InvocationRetryPolicy,
    ObjectContext,
    Service,
    VirtualObject,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
    app,
)

pytestmark = pytest.mark.fast  # no server: the fast lane (pytest -m fast)


def _accept(version: int) -> dict[str, str]:
    return {"accept": f"application/vnd.restate.endpointmanifest.v{version}+json"}


def _services() -> list[Service | VirtualObject | Workflow]:
    svc = Service("Svc", description="docs", inactivity_timeout=timedelta(seconds=90))
    obj = VirtualObject("Obj", enable_lazy_state=True)
    wf = Workflow("Wf")

    @svc.handler(
        metadata={"team": "a"},
        invocation_retry_policy=InvocationRetryPolicy(
            initial_interval=timedelta(milliseconds=200), max_attempts=7, on_max_attempts="pause"
        ),
    )
    async def hello(ctx: Context, name: str) -> str:
        """Says hello."""
        return name

    @obj.handler(kind="shared", ingress_private=True)
    async def peek(ctx: ObjectContext) -> int:
        return 1

    @obj.handler()
    async def poke(ctx: ObjectContext) -> None:
        return None

    @wf.main(workflow_retention=timedelta(days=1))
    async def run(ctx: WorkflowContext, x: int) -> int:
        return x

    @wf.handler()
    async def signal(ctx: WorkflowSharedContext) -> None:
        return None

    return [svc, obj, wf]


def test_manifest_v4_carries_kinds_and_options() -> None:
    with TestClient(app(_services())) as client:
        response = client.get("/discover", headers=_accept(4))
    assert response.status_code == 200
    assert response.headers["content-type"] == _accept(4)["accept"]
    manifest = response.json()
    assert manifest["minProtocolVersion"] == 5 and manifest["maxProtocolVersion"] == 7
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"  # the test client speaks HTTP/1.1
    svc, obj, wf = manifest["services"]
    assert (svc["ty"], obj["ty"], wf["ty"]) == ("SERVICE", "VIRTUAL_OBJECT", "WORKFLOW")
    assert svc["documentation"] == "docs" and svc["inactivityTimeout"] == 90_000
    hello = svc["handlers"][0]
    assert "ty" not in hello and hello["documentation"] == "Says hello."
    assert hello["metadata"] == {"team": "a"}
    assert hello["retryPolicyInitialInterval"] == 200
    assert hello["retryPolicyMaxAttempts"] == 7 and hello["retryPolicyOnMaxAttempts"] == "PAUSE"
    assert hello["input"] == {
        "required": False,
        "contentType": "application/json",
        "jsonSchema": {"type": "string"},
    }
    assert obj["enableLazyState"] is True
    assert [(h["name"], h["ty"]) for h in obj["handlers"]] == [
        ("peek", "SHARED"),
        ("poke", "EXCLUSIVE"),
    ]
    assert obj["handlers"][0]["ingressPrivate"] is True
    assert obj["handlers"][1]["input"] == {}
    # Returning nothing (-> None, or no annotation) declares no output, as the official SDK.
    assert obj["handlers"][1]["output"] == {"setContentTypeIfEmpty": False}
    assert obj["handlers"][0]["output"] == {
        "setContentTypeIfEmpty": False,
        "contentType": "application/json",
        "jsonSchema": {"type": "integer"},
    }
    assert [(h["name"], h["ty"]) for h in wf["handlers"]] == [
        ("run", "WORKFLOW"),
        ("signal", "SHARED"),
    ]
    assert wf["handlers"][0]["workflowCompletionRetention"] == 86_400_000


def test_manifest_versions_negotiated_and_refused() -> None:
    with TestClient(app(_services())) as client:
        # v3 cannot carry the retry policy: say so rather than drop it silently.
        response = client.get("/discover", headers=_accept(3))
        assert response.status_code == 500
        assert "retryPolicyInitialInterval" in response.text and "v4" in response.text
        assert client.get("/discover", headers={"accept": "text/html"}).status_code == 415
        plain = Service("Plain")

        @plain.handler()
        async def h(ctx: Context) -> None:
            return None

    with TestClient(app([plain], protocol="bidi", max_protocol_version=5)) as client:
        response = client.get("/discover", headers=_accept(2))
        assert response.status_code == 200
        assert response.json()["protocolMode"] == "BIDI_STREAM"
        assert response.json()["maxProtocolVersion"] == 5
        assert client.get("/health").text == "OK"
        assert client.get("/nowhere").status_code == 404


def test_bad_declarations_fail_early_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="invalid service name"):
        Service("has space")
    svc = Service("S")
    with pytest.raises(TypeError, match="async def"):
        svc.handler()(lambda ctx: None)  # type: ignore[type-var]

    async def too_many(ctx: Context, a: int, b: int) -> None: ...

    with pytest.raises(TypeError, match="takes 3 parameters"):
        svc.handler()(too_many)
    with pytest.raises(ValueError, match="no handlers"):
        app([Service("Empty")])


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Pair:
    left: str
    right: str


def test_default_serde_follows_type_hints() -> None:
    assert DefaultSerde(bytes).deserialize(b"\x00\xff") == b"\x00\xff"
    assert DefaultSerde(bytes).serialize(b"\x00") == b"\x00"
    assert DefaultSerde(Point).deserialize(b'{"x":1,"y":2}') == Point(1, 2)
    assert DefaultSerde(Pair).deserialize(b'{"left":"a","right":"b"}') == Pair("a", "b")
    assert DefaultSerde(Pair).serialize(Pair("a", "b")) == b'{"left":"a","right":"b"}'
    assert DefaultSerde().deserialize(b'{"a":[1,2]}') == {"a": [1, 2]}
    assert DefaultSerde().deserialize(b"") is None
    with pytest.raises(msgspec.ValidationError, match=r"\$\.y"):
        DefaultSerde(Point).deserialize(b'{"x":1,"y":"two"}')
