"""The one client of a Restate server's admin API: registering deployments, SQL queries, the
server's version, cancelling and killing invocations; plus the health check of an endpoint.

Standard library only (``urllib``), so that ``python -m framework register`` needs nothing
beyond the framework's own dependencies.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from framework._dev.processes import LOOPBACK_HOSTS
from framework._dev.wait import wait_until
from framework.exceptions import RestateServerError

__all__ = ["AdminClient", "describe_services", "get_ok", "register_deployment"]

# Loopback is reached directly, whatever HTTP(S)_PROXY says; other hosts the usual way.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    return _DIRECT if host in LOOPBACK_HOSTS else urllib.request.build_opener()


def get_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers 200 (a health check); raises with the reason otherwise."""
    with _opener(url).open(url, timeout=timeout) as response:
        if response.status != 200:
            raise RestateServerError(f"GET {url} answered HTTP {response.status}")
    return True


def _timed_out(error: BaseException) -> bool:
    return isinstance(error, TimeoutError) or isinstance(
        getattr(error, "reason", None), TimeoutError
    )


class _Retry(Exception):
    """A failed attempt that may succeed later (the server or the service is not up yet)."""


class AdminClient:
    """The admin API at ``url`` (``http://host:9070``).

    ``log_tail``, when given, returns the end of the server's log: it is quoted in the error
    when the server cannot be reached or does not answer in time.
    """

    def __init__(self, url: str, *, log_tail: Callable[[], str] | None = None) -> None:
        self.url = url.rstrip("/")
        self._log_tail = log_tail

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 30.0,
        wait: float = 0.0,
        retry_server_errors: bool = False,
    ) -> Any:
        """Send a JSON request and decode the JSON answer (None for an empty one).

        With ``wait`` > 0, an attempt that cannot reach the server (or, with
        ``retry_server_errors``, gets a 5xx answer) is made again until ``wait`` seconds have
        passed; a 4xx answer fails at once. Raises ``RestateServerError`` with the server's
        message.
        """
        url = f"{self.url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        opener = _opener(url)
        failure = ""

        def attempt() -> bytes:
            nonlocal failure
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with opener.open(request, timeout=timeout) as response:
                    raw: bytes = response.read()
                    return raw or b"null"  # truthy for wait_until; an empty answer is None
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")
                with contextlib.suppress(ValueError, AttributeError):
                    detail = json.loads(detail).get("message", detail)
                failure = f"{method} {url} failed with HTTP {error.code}: {detail}"
                if retry_server_errors and error.code >= 500:
                    raise _Retry(failure) from None
                raise RestateServerError(failure) from None
            except OSError as error:  # URLError, refused, reset, timed out
                if _timed_out(error):
                    failure = (
                        f"{method} {url} got no answer within {timeout:.0f}s"
                        + self._log_hint("the server may be overloaded or stuck.")
                    )
                else:
                    reason = getattr(error, "reason", error)
                    failure = f"{method} {url} failed: {reason}" + self._log_hint(
                        "is the server running?"
                    )
                raise _Retry(failure) from error

        def fail(_: str) -> RestateServerError:
            return RestateServerError(failure)  # the last attempt's own words say the most

        raw = wait_until(
            attempt,
            f"{method} {url}",
            timeout=wait,
            # A 5xx means the server ran discovery and it failed: twice a second is plenty.
            interval=0.5 if retry_server_errors else 0.2,
            retry_on=(_Retry,),
            error=fail,
        )
        return json.loads(raw)

    def _log_hint(self, guess: str) -> str:
        if self._log_tail is None:
            return ""
        return f"; {guess} Its log ends with:\n{self._log_tail()}"

    def register(
        self,
        uri: str,
        *,
        force: bool = False,
        use_http_11: bool = False,
        timeout: float = 30.0,
        wait: float = 0.0,
        retry_server_errors: bool = True,
    ) -> dict[str, Any]:
        """``POST /deployments`` for the deployment at ``uri``; the server's answer.

        The server runs discovery against ``uri`` before answering. ``wait`` and
        ``retry_server_errors`` are as in ``request``: a 5xx answer is what a discovery
        request to a service still starting gets. ``force`` overwrites a deployment at the
        same URI (a conflicting registration without it is a 4xx).
        """
        body: dict[str, Any] = {"uri": uri, "force": force}
        if use_http_11:
            body["use_http_11"] = True
        answer = self.request(
            "POST",
            "/deployments",
            body,
            timeout=timeout,
            wait=wait,
            retry_server_errors=retry_server_errors,
        )
        return answer if isinstance(answer, dict) else {}

    def query(self, sql: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Rows of ``sql`` run on the admin query endpoint (``sys_invocation``, ``state``...).

        Each row has every selected column, in select order, with None for SQL NULL. The
        server's JSON leaves NULL columns out of a row, so when there are rows the column
        names are asked for too, with ``DESCRIBE <sql>`` (planned, not run again).
        """
        rows: list[dict[str, Any]] = self.request(
            "POST", "/query", {"query": sql}, timeout=timeout
        )["rows"]
        if not rows:
            return rows
        columns = self._columns(sql, timeout)
        if columns is None or any(name not in columns for row in rows for name in row):
            return rows
        return [{name: row.get(name) for name in columns} for row in rows]

    def _columns(self, sql: str, timeout: float) -> list[str] | None:
        """The result columns of ``sql`` in order, or None when the server cannot say."""
        statement = sql.strip().rstrip(";")
        try:
            answer = self.request(
                "POST", "/query", {"query": f"DESCRIBE {statement}"}, timeout=timeout
            )
        except RestateServerError:
            return None  # not a plain query (e.g. already a DESCRIBE): the rows as they are
        rows = answer.get("rows") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            return None
        names = [row.get("column_name") if isinstance(row, dict) else None for row in rows]
        columns = [name for name in names if isinstance(name, str)]
        return columns if len(columns) == len(names) else None

    def version(self) -> dict[str, Any]:
        """``GET /version``: the server version and ``features`` (e.g. ``protocol_v7``)."""
        answer = self.request("GET", "/version", timeout=10.0)
        return answer if isinstance(answer, dict) else {}

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel an invocation (its handler sees ``TerminalError`` 409, compensation runs)."""
        self.request("PATCH", f"/invocations/{urllib.parse.quote(invocation_id)}/cancel")

    def kill_invocation(self, invocation_id: str) -> None:
        """Kill an invocation: it ends at once, no compensation runs."""
        self.request("PATCH", f"/invocations/{urllib.parse.quote(invocation_id)}/kill")

    def restart_as_new(
        self, invocation_id: str, *, from_index: int | None = None, deployment: str | None = None
    ) -> str:
        """Start a completed invocation again as a new one (its input kept; with
        ``from_index``, the journal prefix up to that entry too); the new invocation's id.
        ``deployment``: a deployment id, ``"latest"`` or ``"keep"``."""
        query = urllib.parse.urlencode(
            {
                key: value
                for key, value in (("from", from_index), ("deployment", deployment))
                if value is not None
            }
        )
        path = f"/invocations/{urllib.parse.quote(invocation_id)}/restart-as-new"
        answer = self.request("PATCH", f"{path}?{query}" if query else path)
        return str(answer["new_invocation_id"])

    def object_state(self, service: str, key: str) -> dict[str, bytes]:
        """The state of a virtual object (or workflow) instance, raw values by name."""
        rows = self.query(
            f"SELECT key, value FROM state WHERE service_name = {sql_text(service)} "
            f"AND service_key = {sql_text(key)}"
        )
        return {row["key"]: bytes.fromhex(row["value"] or "") for row in rows}

    def replace_object_state(self, service: str, key: str, state: dict[str, bytes]) -> None:
        """Replace the whole state of a virtual object instance (the server applies it
        before the object's next invocation runs)."""
        self.request(
            "POST",
            f"/services/{urllib.parse.quote(service)}/state",
            {"object_key": key, "new_state": {name: list(value) for name, value in state.items()}},
        )


def sql_text(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def register_deployment(
    admin_url: str,
    uri: str,
    *,
    force: bool = False,
    use_http_11: bool = False,
    wait: float = 0.0,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Register the deployment at ``uri`` with the server whose admin API is ``admin_url``.

    With ``wait`` > 0, keeps trying for that many seconds while the admin API cannot be
    reached or answers 5xx (e.g. its discovery request to a service still starting failed);
    a 4xx answer fails at once. Raises ``RestateServerError`` with the server's message.
    """
    return AdminClient(admin_url).register(
        uri, force=force, use_http_11=use_http_11, timeout=timeout, wait=wait
    )


def describe_services(answer: dict[str, Any]) -> str:
    """``Greeter (revision 2), Counter (revision 1)``: what a registration answer lists."""
    services = answer.get("services")
    if not isinstance(services, list) or not services:
        return "no services"
    return ", ".join(
        f"{s.get('name')} (revision {s.get('revision')})" for s in services if isinstance(s, dict)
    )
