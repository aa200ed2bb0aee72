"""An async client for the Restate ingress: call, send to and attach to handlers from outside.

Mirrors the official SDK's client (``create_client``, ``RestateClient``,
``RestateClientSendHandle``, ``HttpError``) and adds what the ingress offers beyond it:
attaching to (or reading the output of) an invocation by id, by idempotency key or by workflow
id, and resolving or rejecting awakeables. Needs ``httpx`` (``pip install 'framework[client]'``).

    async with create_client("http://127.0.0.1:8080") as client:
        greeting = await client.service_call(greet, "Ann")         # typed by the handler
        handle = await client.object_send(add, "counter-1", 5)
        total = await handle.attach()                              # decoded like a call
        raw = await client.generic_call("Greeter", "greet", b'"Bob"')

A handler is named by the decorated function (its serdes encode the argument and decode the
answer) or by a ``"Service/handler"`` string (JSON both ways). An answer that is not 2xx
raises ``HttpError``; a ``TerminalError`` raised by the handler arrives as its status code and
message.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast, overload

from framework._api.services import Handler, Workflow, handler_from_callable
from framework._api.targets import KIND_NAMES, HandlerType, resolve_handler
from framework._runtime.codec import JournalValueCodec
from framework.exceptions import HttpError
from framework.serde import BytesSerde, JsonSerde, Serde

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BytesSerde",
    "Client",
    "HttpError",
    "JournalValueCodec",
    "JsonSerde",
    "RestateClient",
    "RestateClientSendHandle",
    "RestateScopedClient",
    "ScopedClient",
    "Serde",
    "create_client",
    "handler_from_callable",
]

I = TypeVar("I")  # noqa: E741 - the official SDK's name for a handler's input type
O = TypeVar("O")  # noqa: E741 - and for its output type

_JSON: Serde[Any] = JsonSerde()
_BYTES = BytesSerde()

# Characters the ingress takes as they are in an idempotency key inside a URL path (it does
# not percent-decode that segment, so a key needing escapes cannot be attached to by path).
_PATH_SAFE = "-._~!$&'()*+,;=:@"
_CONNECT_TIMEOUT = 10.0

_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """One SSL context for the unpooled clients (building one costs ~25 ms)."""
    global _ssl_context
    if _ssl_context is None:
        import httpx

        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


class _Target(NamedTuple):
    service: str
    handler: str
    kind: str | None  # "service" / "object" / "workflow", None when named by a string
    takes_input: bool | None  # None when unknown
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    content_type: str


def _describe(tpe: Any) -> str:
    return getattr(tpe, "__qualname__", None) or repr(tpe)


def _resolve(tpe: Any, method: str, kind: str | None) -> _Target:
    """The handler ``tpe`` names, checked against the kind of call ``method`` makes."""
    service, handler, info = resolve_handler(tpe, kind, f"client.{method}")
    if info is None:
        return _Target(service, handler, None, None, _JSON, _JSON, "application/json")
    accept = info.accept
    content_type = (
        accept if accept and "*" not in accept and "," not in accept else "application/json"
    )
    return _Target(
        service,
        handler,
        info.service_kind,
        info.takes_input,
        info.input_serde,
        info.output_serde,
        content_type,
    )


def _workflow_target(tpe: Any, method: str) -> tuple[str, Serde[Any]]:
    """The workflow name and the serde of its main handler's output."""
    if isinstance(tpe, Workflow):
        for handler in tpe.handlers.values():
            if handler.kind == "workflow":
                return tpe.name, handler.output_serde
        return tpe.name, _JSON
    if isinstance(tpe, str):
        if not tpe or "/" in tpe:
            raise ValueError(
                f"client.{method}({tpe!r}, key): pass the workflow's name, the Workflow "
                "object, or its decorated main handler"
            )
        return tpe, _JSON
    info: Handler | None = getattr(tpe, "__restate_handler__", None)
    if info is None or info.service_kind != "workflow":
        raise TypeError(
            f"client.{method} needs a workflow: pass its name, the Workflow object or its "
            f"decorated main handler, not {_describe(tpe)}"
        )
    serde = info.output_serde if info.kind == "workflow" else _JSON
    return info.service_name, serde


def _path_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"the {what} must be a non-empty string, not {key!r}")
    return urllib.parse.quote(key, safe="")


def _idempotency_path_key(idempotency_key: str) -> str:
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise ValueError(f"the idempotency key must be a non-empty string, not {idempotency_key!r}")
    quoted = urllib.parse.quote(idempotency_key, safe=_PATH_SAFE)
    if quoted != idempotency_key:
        raise ValueError(
            f"cannot attach by the idempotency key {idempotency_key!r}: the ingress reads it "
            "from the URL path without decoding it, so it may only hold letters, digits and "
            f"{_PATH_SAFE!r}. Attach by the invocation id instead (the send handle has it)."
        )
    return quoted


def _error_from(response: httpx.Response) -> HttpError:
    body = response.text
    message = ""
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        message = decoded["message"]
    elif body:
        message = body.strip()
    return HttpError(response.status_code, message or response.reason_phrase, body or None)


class RestateClientSendHandle(Generic[O]):
    """What a send returns: the invocation id, and a way to wait for its result.

    ``status`` is the ingress's word for the send: ``"Accepted"``, or ``"PreviouslyAccepted"``
    when an idempotency key (or a workflow id) named an invocation that already existed.
    """

    def __init__(
        self,
        invocation_id: str,
        status_code: int,
        *,
        status: str | None = None,
        client: RestateClient | None = None,
        output_serde: Serde[Any] | None = None,
    ) -> None:
        self.invocation_id = invocation_id
        self.status_code = status_code
        self.status = status
        self._client = client
        self._output_serde = output_serde or _JSON

    def _owner(self, method: str) -> RestateClient:
        if self._client is None:
            raise RuntimeError(
                f"this send handle was made by hand; use client.{method}(invocation_id) instead"
            )
        return self._client

    async def attach(self) -> O:
        """Wait for the invocation to end; its result, decoded like the call's (or HttpError)."""
        result = await self._owner("attach")._get_result(
            f"/restate/invocation/{self.invocation_id}/attach", self._output_serde
        )
        return cast(O, result)

    async def output(self) -> O:
        """The result if the invocation has ended; HttpError 470 while it still runs."""
        result = await self._owner("output")._get_result(
            f"/restate/invocation/{self.invocation_id}/output", self._output_serde
        )
        return cast(O, result)

    def __repr__(self) -> str:
        return (
            f"RestateClientSendHandle({self.invocation_id!r}, {self.status_code}, "
            f"status={self.status!r})"
        )


class RestateClient:
    """A client of one Restate ingress (get one from ``create_client``)."""

    def __init__(
        self,
        ingress: str,
        headers: Mapping[str, str] | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        journal_value_codec: JournalValueCodec | None = None,
    ) -> None:
        """``http`` is the pooled httpx client to send with; without one, every request
        opens (and closes) its own connection, so the client works from any event loop.
        ``journal_value_codec`` must be the endpoint's: arguments are encoded with it and
        results decoded."""
        self.ingress = ingress.rstrip("/")
        self.headers = dict(headers or {})
        self._http = http
        self._timeout = _timeout(timeout)
        if journal_value_codec is not None and not isinstance(
            journal_value_codec, JournalValueCodec
        ):
            raise TypeError(
                "journal_value_codec must be a JournalValueCodec (the client takes no "
                f"provider), not {type(journal_value_codec).__name__}"
            )
        self._codec = journal_value_codec

    async def _decoded(self, body: bytes) -> bytes:
        codec = self._codec
        return body if codec is None else await codec.decode(body)

    def scope(self, scope: str) -> RestateScopedClient:
        """Calls and sends within ``scope`` (needs the server's experimental flow control:
        ``RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7=true`` and
        ``RESTATE_EXPERIMENTAL_ENABLE_VQUEUES=true``, on a new cluster)."""
        if not isinstance(scope, str) or not scope:
            raise ValueError(f"a scope must be a non-empty string, not {scope!r}")
        return RestateScopedClient(self, scope)

    # -- HTTP ------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {**self.headers, **(headers or {})}
        if self._http is not None:
            response = await self._http.request(
                method,
                self.ingress + path,
                content=content,
                headers=all_headers,
                params=params,
                timeout=self._timeout,
            )
        else:
            import httpx

            async with httpx.AsyncClient(
                verify=_shared_ssl_context(),
                timeout=self._timeout,
                trust_env=_trust_env(self.ingress),
            ) as http:
                response = await http.request(
                    method,
                    self.ingress + path,
                    content=content,
                    headers=all_headers,
                    params=params,
                )
        if not response.is_success:
            raise _error_from(response)
        return response

    async def _get_result(self, path: str, serde: Serde[Any]) -> Any:
        response = await self._request("GET", path)
        return serde.deserialize(await self._decoded(response.content))

    async def _invoke(
        self,
        target: _Target,
        arg: Any,
        *,
        key: str | None,
        send: bool,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
        raw_input: bool = False,
    ) -> httpx.Response:
        if limit_key is not None and scope is None:
            raise ValueError("a limit_key needs a scope: use client.scope(name).<call>(...)")
        if target.takes_input is False and arg is not None:
            raise TypeError(
                f"{target.service}/{target.handler} takes no input; pass None as its argument"
            )
        content = b"" if arg is None and not raw_input else target.input_serde.serialize(arg)
        if self._codec is not None and (content or target.takes_input):
            content = self._codec.encode(content)
        request_headers = dict(headers or {})
        lowered = {name.lower() for name in (*self.headers, *request_headers)}
        if content and "content-type" not in lowered:
            request_headers["content-type"] = target.content_type
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not idempotency_key:
                raise ValueError(
                    f"the idempotency key must be a non-empty string, not {idempotency_key!r}"
                )
            request_headers["idempotency-key"] = idempotency_key
        if limit_key is not None:
            request_headers["x-restate-limit-key"] = limit_key
        key_part = f"/{_path_key(key, 'key')}" if key is not None else ""
        if scope is not None:
            verb = "send" if send else "call"
            path = (
                f"/restate/scope/{_path_key(scope, 'scope')}/{verb}/{target.service}"
                f"{key_part}/{target.handler}"
            )
        else:
            path = f"/{target.service}{key_part}/{target.handler}" + ("/send" if send else "")
        params: dict[str, str] | None = None
        if send_delay is not None:
            if not send:
                raise ValueError("send_delay is for sends only")
            millis = int(send_delay.total_seconds() * 1000)
            if millis < 0:
                raise ValueError(f"send_delay must not be negative, not {send_delay!r}")
            params = {"delay": f"{millis}ms"}
        return await self._request(
            "POST", path, content=content or None, headers=request_headers, params=params
        )

    def _send_handle(self, response: httpx.Response, output_serde: Serde[Any]) -> Any:
        try:
            answer = response.json()
            invocation_id = answer["invocationId"]
        except (ValueError, KeyError, TypeError):
            raise HttpError(
                response.status_code,
                "the ingress answered a send without an invocation id",
                response.text,
            ) from None
        return RestateClientSendHandle(
            invocation_id,
            response.status_code,
            status=answer.get("status"),
            client=self,
            output_serde=output_serde,
        )

    async def _call(self, target: _Target, arg: Any, **options: Any) -> Any:
        response = await self._invoke(target, arg, send=False, **options)
        return target.output_serde.deserialize(await self._decoded(response.content))

    async def _send(self, target: _Target, arg: Any, **options: Any) -> Any:
        response = await self._invoke(target, arg, send=True, **options)
        return self._send_handle(response, target.output_serde)

    # -- the official API ------------------------------------------------------------------

    async def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        """Call a Service handler and wait for its result."""
        target = _resolve(tpe, "service_call", "service")
        return cast(
            O,
            await self._call(
                target, arg, key=None, idempotency_key=idempotency_key, headers=headers
            ),
        )

    async def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle[O]:
        """Start a Service handler (after ``send_delay``) without waiting for it."""
        target = _resolve(tpe, "service_send", "service")
        handle: RestateClientSendHandle[O] = await self._send(
            target,
            arg,
            key=None,
            send_delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return handle

    async def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        """Call a VirtualObject handler on the object ``key`` and wait for its result."""
        target = _resolve(tpe, "object_call", "object")
        return cast(
            O,
            await self._call(
                target, arg, key=key, idempotency_key=idempotency_key, headers=headers
            ),
        )

    async def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle[O]:
        """Start a VirtualObject handler on the object ``key`` without waiting for it."""
        target = _resolve(tpe, "object_send", "object")
        handle: RestateClientSendHandle[O] = await self._send(
            target,
            arg,
            key=key,
            send_delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return handle

    async def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        """Run the workflow ``key`` (its main handler) or call one of its shared handlers,
        and wait for the result."""
        target = _resolve(tpe, "workflow_call", "workflow")
        return cast(
            O,
            await self._call(
                target, arg, key=key, idempotency_key=idempotency_key, headers=headers
            ),
        )

    async def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle[O]:
        """Start the workflow ``key`` (or a shared handler of it) without waiting."""
        target = _resolve(tpe, "workflow_send", "workflow")
        handle: RestateClientSendHandle[O] = await self._send(
            target,
            arg,
            key=key,
            send_delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return handle

    async def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> bytes:
        """Call ``service``/``handler`` (with ``key`` for objects and workflows) with raw
        bytes; the raw answer. The body goes as ``application/json`` unless ``headers`` set
        a content type."""
        target = _Target(service, handler, None, None, _BYTES, _BYTES, "application/json")
        response = await self._invoke(
            target,
            arg,
            key=key,
            send=False,
            idempotency_key=idempotency_key,
            headers=headers,
            scope=scope,
            limit_key=limit_key,
            raw_input=True,
        )
        return response.content

    async def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateClientSendHandle[bytes]:
        """Start ``service``/``handler`` with raw bytes; the handle's ``attach`` gives bytes."""
        target = _Target(service, handler, None, None, _BYTES, _BYTES, "application/json")
        response = await self._invoke(
            target,
            arg,
            key=key,
            send=True,
            send_delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
            scope=scope,
            limit_key=limit_key,
            raw_input=True,
        )
        handle: RestateClientSendHandle[bytes] = self._send_handle(response, _BYTES)
        return handle

    # -- beyond the official API: results, awakeables -------------------------------------

    @overload
    async def attach(self, invocation_id: str) -> Any: ...

    @overload
    async def attach(self, invocation_id: str, tpe: HandlerType[Any, O]) -> O: ...

    async def attach(self, invocation_id: str, tpe: HandlerType[Any, Any] | None = None) -> Any:
        """Wait for the invocation ``invocation_id`` to end and return its result (decoded
        with the output serde of the handler ``tpe`` when given, else as JSON)."""
        serde = _resolve(tpe, "attach", None).output_serde if tpe is not None else _JSON
        return await self._get_result(f"/restate/invocation/{_inv(invocation_id)}/attach", serde)

    async def restart_as_new(
        self,
        invocation_id: str,
        *,
        admin_url: str,
        from_index: int | None = None,
        deployment: str | None = None,
    ) -> str:
        """Start a completed invocation again as a new one, from its input (or keeping its
        journal up to entry ``from_index``), through the server's admin API at ``admin_url``
        (the ingress cannot do it); the new invocation's id. ``deployment``: a deployment
        id, ``"latest"`` or ``"keep"``."""
        import httpx

        params = {
            key: str(value)
            for key, value in (("from", from_index), ("deployment", deployment))
            if value is not None
        }
        url = f"{admin_url.rstrip('/')}/invocations/{_inv(invocation_id)}/restart-as-new"
        async with httpx.AsyncClient(timeout=self._timeout, trust_env=_trust_env(url)) as http:
            response = await http.patch(url, params=params, headers={"accept": "application/json"})
        if not response.is_success:
            raise _error_from(response)
        return str(response.json()["new_invocation_id"])

    @overload
    async def output(self, invocation_id: str) -> Any: ...

    @overload
    async def output(self, invocation_id: str, tpe: HandlerType[Any, O]) -> O: ...

    async def output(self, invocation_id: str, tpe: HandlerType[Any, Any] | None = None) -> Any:
        """The result of the invocation if it has ended; ``HttpError`` 470 while it runs."""
        serde = _resolve(tpe, "output", None).output_serde if tpe is not None else _JSON
        return await self._get_result(f"/restate/invocation/{_inv(invocation_id)}/output", serde)

    async def attach_by_idempotency_key(
        self, tpe: HandlerType[I, O], idempotency_key: str, key: str | None = None
    ) -> O:
        """Wait for the invocation of ``tpe`` made with ``idempotency_key`` (and the object
        ``key`` for a VirtualObject or Workflow handler) to end; its result."""
        result: O = await self._by_idempotency_key(tpe, idempotency_key, key, "attach")
        return result

    async def output_by_idempotency_key(
        self, tpe: HandlerType[I, O], idempotency_key: str, key: str | None = None
    ) -> O:
        """The result of the invocation of ``tpe`` made with ``idempotency_key``, if it has
        ended; ``HttpError`` 470 while it runs, 404 if there is none."""
        result: O = await self._by_idempotency_key(tpe, idempotency_key, key, "output")
        return result

    async def _by_idempotency_key(
        self, tpe: HandlerType[Any, Any], idempotency_key: str, key: str | None, verb: str
    ) -> Any:
        method = f"{verb}_by_idempotency_key"
        target = _resolve(tpe, method, None)
        if target.kind == "service" and key is not None:
            raise ValueError(
                f"client.{method}: {target.service}/{target.handler} is a Service handler; "
                "it has no key"
            )
        if target.kind in ("object", "workflow") and key is None:
            raise ValueError(
                f"client.{method}: {target.service}/{target.handler} is a handler of "
                f"{KIND_NAMES[target.kind]}; pass the key of the object too"
            )
        key_part = f"/{_path_key(key, 'key')}" if key is not None else ""
        path = (
            f"/restate/invocation/{target.service}{key_part}/{target.handler}/"
            f"{_idempotency_path_key(idempotency_key)}/{verb}"
        )
        return await self._get_result(path, target.output_serde)

    async def workflow_attach(self, tpe: HandlerType[Any, Any] | Workflow, key: str) -> Any:
        """Wait for the workflow ``key`` to finish; its main handler's result. ``tpe`` is the
        main handler (its serde decodes), the ``Workflow`` or the workflow's name (JSON)."""
        name, serde = _workflow_target(tpe, "workflow_attach")
        return await self._get_result(
            f"/restate/workflow/{name}/{_path_key(key, 'workflow id')}/attach", serde
        )

    async def workflow_output(self, tpe: HandlerType[Any, Any] | Workflow, key: str) -> Any:
        """The workflow ``key``'s result if it has finished; ``HttpError`` 470 while it runs,
        404 if it never started."""
        name, serde = _workflow_target(tpe, "workflow_output")
        return await self._get_result(
            f"/restate/workflow/{name}/{_path_key(key, 'workflow id')}/output", serde
        )

    async def resolve_awakeable(
        self, awakeable_id: str, value: Any, serde: Serde[Any] | None = None
    ) -> None:
        """Complete the awakeable ``awakeable_id`` with ``value`` (JSON unless ``serde``)."""
        body = (serde or _JSON).serialize(value)
        if self._codec is not None:
            body = self._codec.encode(body)
        headers = {"content-type": "application/json"} if body else None
        await self._request(
            "POST",
            f"/restate/awakeables/{_awakeable(awakeable_id)}/resolve",
            content=body or None,
            headers=headers,
        )

    async def reject_awakeable(self, awakeable_id: str, message: str) -> None:
        """Fail the awakeable ``awakeable_id``: its awaiter gets a ``TerminalError``."""
        await self._request(
            "POST",
            f"/restate/awakeables/{_awakeable(awakeable_id)}/reject",
            content=message.encode(),
            headers={"content-type": "text/plain"},
        )

    def __repr__(self) -> str:
        return f"RestateClient({self.ingress!r})"


def _import_httpx() -> None:
    """Raise an ImportError that says how to install httpx when it is missing."""
    try:
        import httpx  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "httpx":
            raise
        raise ImportError(
            "the Restate ingress client needs httpx: pip install 'framework[client]'"
        ) from error


def _trust_env(ingress: str) -> bool:
    """Whether to take proxy settings from the environment: not for a loopback ingress."""
    host = urllib.parse.urlsplit(ingress).hostname or ""
    return host not in ("127.0.0.1", "localhost", "::1")


def _inv(invocation_id: str) -> str:
    if not isinstance(invocation_id, str) or not invocation_id.startswith("inv_"):
        raise ValueError(f"an invocation id starts with 'inv_', got {invocation_id!r}")
    return urllib.parse.quote(invocation_id, safe="")


def _awakeable(awakeable_id: str) -> str:
    if not isinstance(awakeable_id, str) or not awakeable_id:
        raise ValueError(f"an awakeable id must be a non-empty string, not {awakeable_id!r}")
    return urllib.parse.quote(awakeable_id, safe="")


def _timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    _import_httpx()
    import httpx

    if timeout is None:
        return httpx.Timeout(None, connect=_CONNECT_TIMEOUT)
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout)


class RestateScopedClient:
    """``client.scope(name)``: calls and sends within one scope, each with an optional
    ``limit_key`` (concurrency limits within the scope)."""

    def __init__(self, client: RestateClient, scope: str) -> None:
        self.client = client
        self.scope_key = scope

    async def _call(self, method: str, kind: str, tpe: Any, arg: Any, **kw: Any) -> Any:
        target = _resolve(tpe, method, kind)
        return await self.client._call(target, arg, scope=self.scope_key, **kw)

    async def _send(self, method: str, kind: str, tpe: Any, arg: Any, **kw: Any) -> Any:
        target = _resolve(tpe, method, kind)
        return await self.client._send(target, arg, scope=self.scope_key, **kw)

    async def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return cast(
            O,
            await self._call(
                "service_call",
                "service",
                tpe,
                arg,
                key=None,
                limit_key=limit_key,
                idempotency_key=idempotency_key,
                headers=headers,
            ),
        )

    async def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle[O]:
        handle: RestateClientSendHandle[O] = await self._send(
            "service_send",
            "service",
            tpe,
            arg,
            key=None,
            send_delay=send_delay,
            limit_key=limit_key,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return handle

    async def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return cast(
            O,
            await self._call(
                "object_call",
                "object",
                tpe,
                arg,
                key=key,
                limit_key=limit_key,
                idempotency_key=idempotency_key,
                headers=headers,
            ),
        )

    async def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle[O]:
        handle: RestateClientSendHandle[O] = await self._send(
            "object_send",
            "object",
            tpe,
            arg,
            key=key,
            send_delay=send_delay,
            limit_key=limit_key,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return handle

    async def workflow_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        return cast(
            O,
            await self._call(
                "workflow_call",
                "workflow",
                tpe,
                arg,
                key=key,
                limit_key=limit_key,
                idempotency_key=idempotency_key,
                headers=headers,
            ),
        )

    async def workflow_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle[O]:
        handle: RestateClientSendHandle[O] = await self._send(
            "workflow_send",
            "workflow",
            tpe,
            arg,
            key=key,
            send_delay=send_delay,
            limit_key=limit_key,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return handle

    def __repr__(self) -> str:
        return f"RestateScopedClient({self.client.ingress!r}, scope={self.scope_key!r})"


@asynccontextmanager
async def create_client(
    ingress: str,
    headers: dict[str, str] | None = None,
    journal_value_codec: JournalValueCodec | None = None,
    *,
    timeout: float | httpx.Timeout | None = None,
) -> AsyncIterator[RestateClient]:
    """A ``RestateClient`` of the ingress at ``ingress`` (e.g. ``http://127.0.0.1:8080``),
    sending ``headers`` with every request; its connections close on exit.

    ``timeout`` (seconds) bounds every request; by default only connecting is bounded (10 s),
    since a call or an attach lasts as long as the handler does.
    ``journal_value_codec``: the endpoint's codec (``app(..., journal_value_codec=...)``);
    arguments are encoded with it, results decoded.
    """
    limit = _timeout(timeout)
    import httpx

    async with httpx.AsyncClient(timeout=limit, trust_env=_trust_env(ingress)) as http:
        yield RestateClient(
            ingress, headers, http=http, timeout=limit, journal_value_codec=journal_value_codec
        )


# The official SDK's names for the client implementations (its RestateClient is abstract).
Client = RestateClient
ScopedClient = RestateScopedClient
