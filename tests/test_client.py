"""The ingress client (framework.client) against a real restate-server.

The services (tests/client_services.py) are served in a child process and registered with the
session's server; every test talks to them only through ``create_client``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from framework import HttpError, RestateClient, RestateClientSendHandle, create_client
from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from tests import client_services as svc

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ingress(
    restate_server: RestateServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("client") / "service.log"
    with ServiceProcess("tests.client_services:app", log_path=log, cwd=ROOT) as service:
        restate_server.register(service.url)
        yield restate_server.ingress_url


@pytest.fixture
async def client(ingress: str) -> AsyncIterator[RestateClient]:
    async with create_client(ingress, timeout=30) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- calls -----------------------------------------------------------------------------------


async def test_calls_typed_by_the_handler_or_named_by_string(client: RestateClient) -> None:
    assert await client.service_call(svc.greet, "Ann") == "Hello, Ann!"
    named: str = await client.service_call("ClientGreeter/greet", "Bob")
    assert named == "Hello, Bob!"
    assert await client.service_call(svc.hello, None) == "hello, nobody"
    key = unique("counter")
    assert await client.object_call(svc.add, key, 2) == 2
    assert await client.object_call(svc.add, key, 3) == 5
    assert await client.object_call(svc.get, key, None) == 5
    assert await client.object_call("ClientCounter/get", key, None) == 5


async def test_typed_input_and_output(client: RestateClient) -> None:
    profile = await client.service_call(svc.profile, svc.Person("Ann", 30))
    assert isinstance(profile, svc.Profile)
    assert profile == svc.Profile(greeting="Hi Ann", adult=True, tags=["ann"])
    # By name there is no type to decode into: plain JSON.
    raw: dict[str, Any] = await client.service_call(
        "ClientGreeter/profile", {"name": "Kid", "age": 9}
    )
    assert raw == {"greeting": "Hi Kid", "adult": False, "tags": ["kid"]}
    # The send handle decodes with the same serde as the call.
    handle = await client.service_send(svc.profile, svc.Person("Bo", 18))
    assert await handle.attach() == svc.Profile(greeting="Hi Bo", adult=True, tags=["bo"])
    assert await client.service_call(svc.echo_bytes, b"abc") == b"cba"


async def test_generic_call_and_send_take_and_give_bytes(client: RestateClient) -> None:
    assert await client.generic_call("ClientGreeter", "greet", b'"Cy"') == b'"Hello, Cy!"'
    key = unique("counter")
    assert await client.generic_call("ClientCounter", "add", b"4", key=key) == b"4"
    handle = await client.generic_send("ClientCounter", "add", b"1", key=key)
    assert await handle.attach() == b"5"


async def test_headers_of_the_client_and_of_the_call_reach_the_handler(ingress: str) -> None:
    async with create_client(ingress, headers={"x-client-default": "d"}, timeout=30) as client:
        seen = await client.service_call(svc.headers, None, headers={"x-client-call": "c"})
    assert seen == {"x-client-default": "d", "x-client-call": "c"}


# -- sends, attach, output -------------------------------------------------------------------


async def test_send_then_output_and_attach(client: RestateClient) -> None:
    handle = await client.service_send(svc.slow, 700)
    assert isinstance(handle, RestateClientSendHandle)
    assert handle.invocation_id.startswith("inv_")
    assert handle.status_code == 202 and handle.status == "Accepted"
    with pytest.raises(HttpError) as running:
        await handle.output()
    assert running.value.status_code == 470, running.value
    assert "not completed" in running.value.message
    assert await handle.attach() == 700
    assert await handle.output() == 700
    assert await client.attach(handle.invocation_id) == 700
    assert await client.output(handle.invocation_id, svc.slow) == 700


async def test_send_with_a_delay(client: RestateClient) -> None:
    sent_at = time.time()
    handle = await client.service_send(svc.now, None, send_delay=timedelta(seconds=1))
    ran_at = await handle.attach()
    assert ran_at - sent_at >= 0.9, f"ran {ran_at - sent_at:.3f}s after the send"


async def test_object_send_keeps_the_order_of_one_key(client: RestateClient) -> None:
    key = unique("counter")
    handles = [await client.object_send(svc.add, key, n) for n in (1, 2, 3)]
    assert [await h.attach() for h in handles] == [1, 3, 6]


# -- idempotency -----------------------------------------------------------------------------


async def test_an_idempotency_key_runs_the_handler_once(client: RestateClient) -> None:
    key, idem = unique("counter"), unique("idem")
    assert await client.object_call(svc.add, key, 1, idempotency_key=idem) == 1
    assert await client.object_call(svc.add, key, 1, idempotency_key=idem) == 1
    assert await client.object_call(svc.get, key, None) == 1, "the handler ran twice"
    assert await client.attach_by_idempotency_key(svc.add, idem, key=key) == 1
    assert await client.output_by_idempotency_key(svc.add, idem, key=key) == 1

    idem = unique("idem")
    first = await client.service_send(svc.slow, 300, idempotency_key=idem)
    again = await client.service_send(svc.slow, 300, idempotency_key=idem)
    assert again.invocation_id == first.invocation_id
    assert (first.status, again.status) == ("Accepted", "PreviouslyAccepted")
    assert await client.attach_by_idempotency_key(svc.slow, idem) == 300
    with pytest.raises(HttpError) as missing:
        await client.attach_by_idempotency_key(svc.slow, unique("never-used"))
    assert missing.value.status_code == 404


async def test_attach_by_idempotency_key_checks_its_arguments(client: RestateClient) -> None:
    with pytest.raises(ValueError, match="pass the key of the object"):
        await client.attach_by_idempotency_key(svc.add, "k1")
    with pytest.raises(ValueError, match="has no key"):
        await client.attach_by_idempotency_key(svc.slow, "k1", key="x")
    with pytest.raises(ValueError, match="Attach by the invocation id instead"):
        await client.attach_by_idempotency_key(svc.slow, "a/b c")


# -- workflows and awakeables ----------------------------------------------------------------


async def test_workflow_send_awakeable_resolve_attach_and_output(client: RestateClient) -> None:
    workflow_id = unique("wf")
    handle = await client.workflow_send(svc.run, workflow_id, "doc")
    with pytest.raises(HttpError) as running:
        await client.workflow_output(svc.run, workflow_id)
    assert running.value.status_code == 470
    awakeable_id = await client.workflow_call(svc.awakeable_id, workflow_id, None)
    assert awakeable_id.startswith("sign_1")
    await client.resolve_awakeable(awakeable_id, "yes")
    assert await handle.attach() == "doc approved: yes"
    assert await client.workflow_attach(svc.approval, workflow_id) == "doc approved: yes"
    assert await client.workflow_output("ClientApproval", workflow_id) == "doc approved: yes"
    again = await client.workflow_send(svc.run, workflow_id, "doc")
    assert again.invocation_id == handle.invocation_id
    assert again.status == "PreviouslyAccepted"
    with pytest.raises(HttpError) as never:
        await client.workflow_output(svc.run, unique("wf"))
    assert never.value.status_code == 404


async def test_awakeable_rejected_through_the_client(client: RestateClient) -> None:
    workflow_id = unique("wf")
    handle = await client.workflow_send(svc.run, workflow_id, "doc")
    awakeable_id = await client.workflow_call(svc.awakeable_id, workflow_id, None)
    await client.reject_awakeable(awakeable_id, "too late")
    with pytest.raises(HttpError) as rejected:
        await handle.attach()
    assert rejected.value.status_code == 409
    assert rejected.value.message == "doc rejected: too late"


# -- errors ----------------------------------------------------------------------------------


async def test_a_terminal_error_arrives_as_its_status_and_message(client: RestateClient) -> None:
    with pytest.raises(HttpError) as refused:
        await client.service_call(svc.refuse, "no thanks")
    error = refused.value
    assert error.status_code == 418
    assert error.message == "refused: no thanks"
    assert str(error) == "HTTP 418: refused: no thanks"
    assert error.body is not None and json.loads(error.body)["code"] == 418


async def test_unknown_handlers_and_services_are_404(client: RestateClient) -> None:
    with pytest.raises(HttpError) as handler:
        await client.generic_call("ClientGreeter", "nosuch", b'"x"')
    assert handler.value.status_code == 404
    assert "nosuch" in handler.value.message
    with pytest.raises(HttpError) as service:
        await client.service_call("NoSuchService/greet", "x")
    assert service.value.status_code == 404
    assert "NoSuchService" in service.value.message


async def test_bad_input_is_400_with_the_decoding_error(client: RestateClient) -> None:
    with pytest.raises(HttpError) as bad:
        await client.service_call("ClientGreeter/profile", {"name": 1, "age": 2})
    assert bad.value.status_code == 400
    assert 'wrong value type for field "name"' in bad.value.message  # a dataclass input


async def test_mistakes_fail_before_reaching_the_server(client: RestateClient) -> None:
    with pytest.raises(TypeError, match=r"ClientCounter/add is a handler of a VirtualObject"):
        await client.service_call(svc.add, 1)
    with pytest.raises(TypeError, match=r"client\.service_call\(handler, arg\)"):
        await client.object_call(svc.greet, "key", "Ann")
    with pytest.raises(TypeError, match="a handler of a Workflow"):
        await client.object_send(svc.run, "key", "doc")
    with pytest.raises(TypeError, match="needs a handler"):
        await client.service_call(len, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'Service/handler'"):
        await client.service_call("ClientGreeter.greet", "x")
    with pytest.raises(TypeError, match="takes no input"):
        await client.service_call(svc.hello, "x")
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        await client.object_call(svc.add, "", 1)
    with pytest.raises(ValueError, match="invocation id"):
        await client.attach("not-an-id")


async def test_scoped_calls_reach_the_scoped_ingress_path(client: RestateClient) -> None:
    # This server runs without the experimental flow control, so it refuses scoped calls;
    # that it says so shows the client used the scope API.
    with pytest.raises(HttpError) as refused:
        await client.scope("tenant-1").service_call(svc.greet, "Ann", limit_key="user-1")
    assert refused.value.status_code == 400
    assert "vqueues" in refused.value.message
    with pytest.raises(ValueError, match="needs a scope"):
        await client.generic_call("ClientGreeter", "greet", b'"x"', limit_key="user-1")
