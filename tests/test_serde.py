"""Serde: every kind of value round trips through a real Restate server, bad input is a 400
naming the field, and the discovery manifest carries JSON Schemas (shown by the server's
OpenAPI)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pydantic
import pytest

from framework._dev.restate_server import RestateServer
from framework._dev.service_process import ServiceProcess
from framework.serde import (
    BytesSerde,
    DataclassJsonSerde,
    DefaultSerde,
    JsonSerde,
    MsgspecJsonSerde,
    PydanticJsonSerde,
    describe_decode_error,
)
from tests.serde_services import Address, Color, Movie, Order, Person, Point

ROOT = Path(__file__).resolve().parents[1]


# -- in-process round trips -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "value", "inner"),
    [
        (
            Person,
            Person(name="Ann", age=3, addresses=[Address(street="x", zip_code="12345")]),
            PydanticJsonSerde,
        ),
        (list[Person], [Person(name="Ann", age=3)], PydanticJsonSerde),
        (Person | None, Person(name="Ann", age=3), PydanticJsonSerde),
        (Point, Point(1, 2), MsgspecJsonSerde),
        (Order, Order("tea", 2), DataclassJsonSerde),
        (list[Order], [Order("tea", 2, note="hot")], DataclassJsonSerde),
        (Movie, {"title": "Up", "year": 2009}, JsonSerde),
        (Color, "green", JsonSerde),
        (dict[str, list[int]], {"a": [1, 2]}, MsgspecJsonSerde),
        (bytes, b"\x00\xff raw", BytesSerde),
        (None, {"any": ["json", 1, None]}, JsonSerde),
    ],
)
def test_default_serde_round_trips(hint: Any, value: Any, inner: type) -> None:
    serde: DefaultSerde[Any] = DefaultSerde(hint)
    assert isinstance(serde._inner, inner)
    assert serde.deserialize(serde.serialize(value)) == value
    assert serde.serialize(None) == b""
    if hint is not bytes:  # for bytes, an empty body is just empty bytes
        assert serde.deserialize(b"") is None


def test_schemas_describe_the_types() -> None:
    person = DefaultSerde(Person).json_schema()
    assert person is not None and person["properties"]["age"]["minimum"] == 0
    order = DefaultSerde(Order).json_schema()
    assert order is not None and "Order" in str(order)
    assert DefaultSerde(bytes).json_schema() is None
    assert DefaultSerde().json_schema() is None


def test_schemas_require_only_what_decoding_requires() -> None:
    # A TypedDict is not validated: its schema requires no key. A dataclass needs the
    # fields that have no default and cannot be null (an absent Optional one becomes None).
    movie = DefaultSerde(Movie).json_schema()
    assert movie is not None and "required" not in movie["$defs"]["Movie"]
    assert set(movie["$defs"]["Movie"]["properties"]) == {"title", "year"}
    order = DefaultSerde(list[Order]).json_schema()
    assert order is not None and order["$defs"]["Order"]["required"] == ["item", "quantity"]


def test_decode_errors_name_the_field() -> None:
    with pytest.raises(pydantic.ValidationError) as pydantic_error:
        DefaultSerde(Person).deserialize(b'{"name": "Ann", "age": -1}')
    assert describe_decode_error(pydantic_error.value).startswith("age: Input should be")
    with pytest.raises(msgspec.ValidationError) as msgspec_error:
        DefaultSerde(Point).deserialize(b'{"x": 1, "y": "two"}')
    assert "$.y" in describe_decode_error(msgspec_error.value)
    with pytest.raises(Exception) as dataclass_error:
        DefaultSerde(Order).deserialize(b'{"item": "tea", "quantity": "two"}')
    assert '"quantity"' in describe_decode_error(dataclass_error.value)
    with pytest.raises(Exception) as nested_error:
        DefaultSerde(list[Order]).deserialize(b'[{"quantity": 2}]')
    assert 'missing value for field "item"' in describe_decode_error(nested_error.value)


def test_decoding_matches_the_official_sdk() -> None:
    """What the official SDK hands a handler, we hand it too: TypedDicts, enums and other
    hints it does not validate arrive as the JSON sent; dataclasses are built with absent
    Optional fields as None; JSON builtins stay validated."""
    # Not validated, so not what the hint's type says (for mypy: Any).
    assert cast(Any, DefaultSerde(Movie).deserialize(b'{"title": "Up"}')) == {"title": "Up"}
    assert cast(Any, DefaultSerde(list[Movie]).deserialize(b"[{}]")) == [{}]
    assert cast(Any, DefaultSerde(Color).deserialize(b'"blue"')) == "blue"
    assert DefaultSerde(Order).deserialize(b'{"item": "tea", "quantity": 1, "x": 0}') == Order(
        "tea", 1
    )
    assert DefaultSerde(cast(type[Order | None], Order | None)).deserialize(b"null") is None
    assert DefaultSerde(dict[str, Order]).deserialize(b'{"a": {"item": "t", "quantity": 2}}') == {
        "a": Order("t", 2)
    }
    with pytest.raises(msgspec.ValidationError):
        DefaultSerde(int).deserialize(b'"abc"')
    with pytest.raises(msgspec.ValidationError):
        DefaultSerde(list[int | None]).deserialize(b'[1, "x"]')
    # Strict decoding of the loose kinds, when asked for.
    assert MsgspecJsonSerde(Color).deserialize(b'"red"') is Color.RED
    with pytest.raises(msgspec.ValidationError):
        MsgspecJsonSerde(Movie).deserialize(b'{"title": "Up"}')


# -- through the server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingress(
    restate_server: RestateServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("serde") / "service.log"
    with ServiceProcess("tests.serde_services:app", log_path=log, cwd=ROOT) as service:
        restate_server.register(service.url, force=True)
        with httpx.Client(base_url=restate_server.ingress_url, timeout=30) as client:
            yield client


def _post(client: httpx.Client, handler: str, body: Any) -> httpx.Response:
    return client.post(
        f"/Serde/{handler}",
        content=msgspec.json.encode(body),
        headers={"content-type": "application/json"},
    )


def test_every_kind_round_trips_through_the_server(ingress: httpx.Client) -> None:
    ann = {"name": "Ann", "age": 41, "addresses": [{"street": "Main", "zip_code": "10115"}]}
    assert _post(ingress, "birthday", ann).json() == {**ann, "age": 42}
    group = [{"name": "B", "age": 9, "addresses": []}, {"name": "A", "age": 2, "addresses": []}]
    assert _post(ingress, "people", group).json() == group[::-1]
    assert _post(ingress, "mirror", {"x": 1, "y": -2}).json() == {"x": -1, "y": 2}
    assert _post(ingress, "ship", {"item": "tea", "quantity": 2}).json() == {
        "item": "tea",
        "quantity": 2,
        "express": True,
        "note": None,
    }
    assert _post(ingress, "rate", {"title": "up", "year": 2009}).json() == {
        "title": "UP",
        "year": 2009,
    }
    assert _post(ingress, "complement", "red").json() == "green"
    assert _post(ingress, "complement_strict", "red").json() == "green"
    assert _post(ingress, "label", {"item": "tea", "quantity": 2}).json() == "2 tea (None)"
    assert _post(ingress, "label", None).json() == "nothing"
    assert _post(ingress, "titles", [{"title": "Up"}, {"title": "Big", "year": 1988}]).json() == [
        "Up",
        "Big (1988)",
    ]
    assert _post(ingress, "anything", [1, "two"]).json() == {"got": [1, "two"]}
    assert _post(ingress, "untyped_to_person", {"name": "Bo", "age": 5}).json() == {
        "name": "Bo",
        "age": 5,
        "addresses": [],
    }
    assert _post(ingress, "model_without_hint", "Cy").json() == {
        "name": "Cy",
        "age": 1,
        "addresses": [],
    }
    raw = ingress.post(
        "/Serde/reverse",
        content=b"\x01\x02\xff",
        headers={"content-type": "application/octet-stream"},
    )
    assert raw.status_code == 200 and raw.content == b"\xff\x02\x01"
    assert raw.headers["content-type"] == "application/octet-stream"
    csv = ingress.post("/Serde/sort_csv", content=b"b,c,a", headers={"content-type": "text/csv"})
    assert csv.status_code == 200 and csv.content == b"a,b,c"


@pytest.mark.parametrize(
    ("handler", "body", "field"),
    [
        ("birthday", {"name": "Ann", "age": "old"}, "age"),
        (
            "birthday",
            {"name": "Ann", "age": 1, "addresses": [{"street": "x", "zip_code": "1"}]},
            "addresses.0.zip_code",
        ),
        ("ship", {"item": "tea"}, "quantity"),
        ("mirror", {"x": 1, "y": "up"}, "$.y"),
        ("complement_strict", "blue", "blue"),
    ],
)
def test_malformed_input_is_a_400_naming_the_field(
    ingress: httpx.Client, handler: str, body: Any, field: str
) -> None:
    response = _post(ingress, handler, body)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert f"invalid input for Serde/{handler}" in message and field in message, message


def test_schemas_reach_the_servers_openapi(
    restate_server: RestateServer, ingress: httpx.Client
) -> None:
    openapi = httpx.get(f"{restate_server.admin_url}/services/Serde/openapi", timeout=10)
    assert openapi.status_code == 200, openapi.text
    text = openapi.text
    assert "zip_code" in text and "quantity" in text and "express" in text


def test_a_dataclass_is_a_typed_value_not_a_dict() -> None:
    order = DefaultSerde(Order).deserialize(b'{"item": "tea", "quantity": 1}')
    assert dataclasses.is_dataclass(order) and order == Order("tea", 1)
