"""Handlers taking and returning every kind of value the default serde handles."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypedDict

import msgspec
import pydantic

import framework
from framework import Context, RunOptions
from framework.serde import JsonSerde, MsgspecJsonSerde, PydanticJsonSerde, Serde

svc = framework.Service("Serde")


class Address(pydantic.BaseModel):
    street: str
    zip_code: str = pydantic.Field(pattern=r"^\d{5}$")


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0)
    addresses: list[Address] = []


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Order:
    item: str
    quantity: int
    express: bool = False
    note: str | None = None


class Movie(TypedDict):
    title: str
    year: int


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@svc.handler()
async def birthday(ctx: Context, person: Person) -> Person:
    # The step's result type comes from the closure's annotation: a Person on replay too.
    def older() -> Person:
        return person.model_copy(update={"age": person.age + 1})

    return await ctx.run_typed("grow older", older)


@svc.handler()
async def people(ctx: Context, group: list[Person]) -> list[Person]:
    return sorted(group, key=lambda p: p.age)


@svc.handler()
async def mirror(ctx: Context, point: Point) -> Point:
    return Point(x=-point.x, y=-point.y)


@svc.handler()
async def ship(ctx: Context, order: Order) -> Order:
    stored = await ctx.run_typed("store", lambda: order, RunOptions(type_hint=Order))
    return dataclasses.replace(stored, express=True)


@svc.handler()
async def rate(ctx: Context, movie: Movie) -> Movie:
    return {"title": movie["title"].upper(), "year": movie["year"]}


@svc.handler()
async def complement(ctx: Context, color: Color) -> Color:
    # As with the official SDK, an enum hint decodes loosely: the value arrives as sent.
    return Color.GREEN if Color(color) is Color.RED else Color.RED


@svc.handler(input_serde=MsgspecJsonSerde(Color))
async def complement_strict(ctx: Context, color: Color) -> Color:
    # Strict decoding, asked for: the handler gets a Color, anything else is a 400.
    return Color.GREEN if color is Color.RED else Color.RED


@svc.handler()
async def label(ctx: Context, order: Order | None) -> str:
    # A dataclass arrives built, absent Optional fields as None; null is None.
    return "nothing" if order is None else f"{order.quantity} {order.item} ({order.note})"


@svc.handler()
async def titles(ctx: Context, movies: list[Movie]) -> list[str]:
    # TypedDicts are not validated: keys a client leaves out are simply absent.
    return [m["title"] + (f" ({m['year']})" if "year" in m else "") for m in movies]


@svc.handler()
async def reverse(ctx: Context, data: bytes) -> bytes:
    return data[::-1]


class Csv(Serde[list[str]]):
    """A custom serde: comma-separated text."""

    def deserialize(self, buf: bytes) -> list[str] | None:
        return buf.decode().split(",") if buf else None

    def serialize(self, obj: list[str] | None) -> bytes:
        return ",".join(obj or []).encode()


@svc.handler(input_serde=Csv(), output_serde=Csv(), accept="text/csv", content_type="text/csv")
async def sort_csv(ctx: Context, values: list[str]) -> list[str]:
    return sorted(values)


@svc.handler(output_serde=PydanticJsonSerde(Person))
async def untyped_to_person(ctx: Context, raw: dict[str, Any]) -> Any:
    return Person(name=raw["name"], age=raw["age"])


@svc.handler(input_serde=JsonSerde())
async def anything(ctx: Context, value: Any) -> Any:
    return {"got": value}


@svc.handler()
async def model_without_hint(ctx: Context, name: str):  # type: ignore[no-untyped-def]
    # No return annotation: a Pydantic model returned anyway is still encoded as JSON.
    return Person(name=name, age=1)


app = framework.app([svc])
