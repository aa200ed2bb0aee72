"""Proxy: forwards raw bytes to any handler by name, as a call, a send, or many of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypedDict

from framework import Context, RestateDurableFuture, SendHandle, Service, gather

proxy = Service("Proxy")


class ProxyRequest(TypedDict):
    """Where to forward ``message`` (bytes as a JSON array of numbers) and how."""

    serviceName: str
    virtualObjectKey: str | None
    handlerName: str
    message: list[int]
    delayMillis: int | None
    idempotencyKey: str | None
    scope: str | None
    limitKey: str | None


class ManyCallRequest(TypedDict):
    """One of the forwards of ``manyCalls``."""

    proxyRequest: ProxyRequest
    oneWayCall: bool
    awaitAtTheEnd: bool


def _forward(ctx: Context, request: ProxyRequest) -> RestateDurableFuture[bytes]:
    return ctx.generic_call(
        request["serviceName"],
        request["handlerName"],
        bytes(request["message"]),
        key=request.get("virtualObjectKey"),
        idempotency_key=request.get("idempotencyKey"),
        scope=request.get("scope"),
        limit_key=request.get("limitKey"),
    )


def _send(ctx: Context, request: ProxyRequest) -> SendHandle:
    delay = request.get("delayMillis")
    return ctx.generic_send(
        request["serviceName"],
        request["handlerName"],
        bytes(request["message"]),
        key=request.get("virtualObjectKey"),
        send_delay=timedelta(milliseconds=delay) if delay else None,
        idempotency_key=request.get("idempotencyKey"),
        scope=request.get("scope"),
        limit_key=request.get("limitKey"),
    )


@proxy.handler(name="call")
async def call(ctx: Context, request: ProxyRequest) -> list[int]:
    return list(await _forward(ctx, request))


@proxy.handler(name="oneWayCall")
async def one_way_call(ctx: Context, request: ProxyRequest) -> str:
    return await _send(ctx, request).invocation_id()


@proxy.handler(name="manyCalls")
async def many_calls(ctx: Context, requests: list[ManyCallRequest]) -> None:
    later: list[RestateDurableFuture[Any]] = []
    for each in requests:
        if each["oneWayCall"]:
            _send(ctx, each["proxyRequest"])
        elif each["awaitAtTheEnd"]:
            later.append(_forward(ctx, each["proxyRequest"]))
        else:
            await _forward(ctx, each["proxyRequest"])
    for done in await gather(*later):
        await done
