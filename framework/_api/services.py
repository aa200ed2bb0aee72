"""Service, VirtualObject and Workflow: decorators that turn async functions into handlers."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from framework._api.hooks import Hook, overrides
from framework.serde import DefaultSerde, Serde

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
HandlerKind = Literal["exclusive", "shared", "workflow"]
ServiceKind = Literal["service", "object", "workflow"]

_JSON = "application/json"
_SERVICE_NAME = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$")
_HANDLER_NAME = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$")


@dataclass
class InvocationRetryPolicy:
    """How the server retries a failing invocation (manifest v4; the server's policy if unset)."""

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["pause", "kill"] | None = None


@dataclass
class HandlerOptions:
    """The per-handler (or per-service) settings the server reads from discovery."""

    metadata: dict[str, str] | None = None
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    journal_retention: timedelta | None = None
    idempotency_retention: timedelta | None = None
    workflow_retention: timedelta | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    invocation_retry_policy: InvocationRetryPolicy | None = None


@dataclass(frozen=True)
class ServiceTag:
    """What names a service: its kind, name, and the documentation discovery shows."""

    kind: ServiceKind
    name: str
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass
class Handler:
    """One handler of a service: the function and what discovery and invocation need."""

    service_name: str
    service_kind: ServiceKind
    name: str
    kind: HandlerKind | None
    fn: Callable[..., Awaitable[Any]]
    takes_input: bool
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    accept: str = "application/json"
    content_type: str = "application/json"
    # No return annotation, or ``-> None``: discovery declares no output, as the official
    # SDK does (the server, its UI and OpenAPI then show the handler as returning nothing).
    void_output: bool = False
    options: HandlerOptions = field(default_factory=HandlerOptions)
    description: str | None = None
    context_managers: list[Callable[[], typing.AsyncContextManager[None]]] = field(
        default_factory=list
    )
    # _preview.explicit_recovery on this handler (see framework._preview).
    explicit_recovery: bool = False
    service_tag: ServiceTag | None = None
    # Service hooks first (outermost), then the handler's own.
    hooks: list[Hook] = field(default_factory=list)
    # The hooks' methods that do something, split once here rather than per invocation.
    attempt_hooks: tuple[Callable[..., Awaitable[Any]], ...] = field(init=False, default=())
    step_hooks: tuple[Callable[..., Awaitable[Any]], ...] = field(init=False, default=())
    # What the server does after a journal mismatch (protocol v7); None: retry.
    journal_mismatch: MismatchBehavior | None = None

    def __post_init__(self) -> None:
        self.attempt_hooks = tuple(
            h.around_attempt for h in self.hooks if overrides(h, "around_attempt")
        )
        self.step_hooks = tuple(h.around_step for h in self.hooks if overrides(h, "around_step"))

    @property
    def arity(self) -> int:
        """How many parameters the function takes: 1 (the context) or 2 (and the input)."""
        return 2 if self.takes_input else 1


MismatchBehavior = Literal["retry", "pause", "fail"]


def _check_mismatch_behavior(value: MismatchBehavior | None) -> MismatchBehavior | None:
    if value not in (None, "retry", "pause", "fail"):
        raise ValueError(f"journal_mismatch must be 'retry', 'pause' or 'fail', not {value!r}")
    return value


class _ServiceBase:
    """What Service, VirtualObject and Workflow share: a name, options and handlers."""

    kind: ServiceKind

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]]
        | None = None,
        *,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> None:
        if not isinstance(name, str) or not _SERVICE_NAME.match(name):
            raise ValueError(
                f"invalid service name {name!r}: use letters, digits, '.', '_' or '-', "
                "starting with a letter"
            )
        self._name = name
        self.description = description
        self.options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=enable_lazy_state,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        self.context_managers = list(invocation_context_managers or [])
        self.hooks = list(hooks or [])
        self.journal_mismatch = _check_mismatch_behavior(journal_mismatch)
        self.handlers: dict[str, Handler] = {}
        # _preview.explicit_recovery on the whole service (see framework._preview).
        self.explicit_recovery = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def service_tag(self) -> ServiceTag:
        """Kind, name, description and metadata, as the official SDK exposes them."""
        return ServiceTag(self.kind, self._name, self.description, self.options.metadata)

    # The service-wide options, readable under the official SDK's attribute names.

    @property
    def metadata(self) -> dict[str, str] | None:
        return self.options.metadata

    @property
    def inactivity_timeout(self) -> timedelta | None:
        return self.options.inactivity_timeout

    @property
    def abort_timeout(self) -> timedelta | None:
        return self.options.abort_timeout

    @property
    def journal_retention(self) -> timedelta | None:
        return self.options.journal_retention

    @property
    def idempotency_retention(self) -> timedelta | None:
        return self.options.idempotency_retention

    @property
    def enable_lazy_state(self) -> bool | None:
        return self.options.enable_lazy_state

    @property
    def ingress_private(self) -> bool | None:
        return self.options.ingress_private

    @property
    def invocation_retry_policy(self) -> InvocationRetryPolicy | None:
        return self.options.invocation_retry_policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, handlers={list(self.handlers)})"

    def _add(
        self,
        kind: HandlerKind | None,
        name: str | None,
        accept: str,
        content_type: str,
        input_serde: Serde[Any] | None,
        output_serde: Serde[Any] | None,
        options: HandlerOptions,
        context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> Callable[[F], F]:
        journal_mismatch = _check_mismatch_behavior(journal_mismatch)

        def register(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(
                    f"handler {getattr(fn, '__qualname__', fn)!r} must be an `async def` "
                    "function taking the context (and optionally one input argument)"
                )
            handler_name = name or fn.__name__
            if not _HANDLER_NAME.match(handler_name):
                raise ValueError(f"invalid handler name {handler_name!r}")
            if handler_name in self.handlers:
                raise ValueError(f"{self._name} already has a handler named {handler_name!r}")
            params = list(inspect.signature(fn).parameters.values())
            if not 1 <= len(params) <= 2:
                raise TypeError(
                    f"handler {handler_name!r} takes {len(params)} parameters; a handler "
                    "takes the context, and optionally one input argument"
                )
            hints = _type_hints(fn)
            input_hint = hints.get(params[1].name) if len(params) == 2 else None
            output_hint = hints.get("return")
            # Raw bytes in or out: any content type in, octet-stream out (unless set).
            handler_accept = "*/*" if input_hint is bytes and accept == _JSON else accept
            handler_content_type = (
                "application/octet-stream"
                if output_hint is bytes and content_type == _JSON
                else content_type
            )
            handler = Handler(
                service_name=self._name,
                service_kind=self.kind,
                name=handler_name,
                kind=kind,
                fn=fn,
                takes_input=len(params) == 2,
                input_serde=_with_hint(input_serde, input_hint),
                output_serde=_with_hint(output_serde, output_hint),
                accept=handler_accept,
                content_type=handler_content_type,
                void_output=_returns_nothing(fn, output_hint),
                options=options,
                description=inspect.getdoc(fn),
                context_managers=self.context_managers + list(context_managers or []),
                service_tag=self.service_tag,
                hooks=self.hooks + list(hooks or []),
                journal_mismatch=journal_mismatch or self.journal_mismatch,
            )
            self.handlers[handler_name] = handler
            fn.__restate_handler__ = handler  # type: ignore[attr-defined]
            return typing.cast(F, fn)

        return register


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def _returns_nothing(fn: Callable[..., Any], resolved_hint: Any) -> bool:
    annotations = getattr(fn, "__annotations__", {})
    if "return" not in annotations:
        return True
    return annotations["return"] in (None, "None") or resolved_hint is type(None)


def _with_hint(serde: Serde[Any] | None, hint: Any) -> Serde[Any]:
    if serde is None or (isinstance(serde, DefaultSerde) and serde.type_hint is None):
        if hint is None or hint is type(None):
            return DefaultSerde()
        return DefaultSerde(hint)
    return serde


class Service(_ServiceBase):
    """A stateless service: handlers run concurrently, with no key and no state."""

    kind: ServiceKind = "service"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]]
        | None = None,
        *,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> None:
        super().__init__(
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
            hooks=hooks,
            journal_mismatch=journal_mismatch,
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]]
        | None = None,
        *,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> Callable[[F], F]:
        """Register an ``async def handler(ctx: Context[, arg])``."""
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._add(
            None,
            name,
            accept,
            content_type,
            input_serde,
            output_serde,
            options,
            invocation_context_managers,
            hooks,
            journal_mismatch,
        )


class VirtualObject(_ServiceBase):
    """A keyed object with durable state; exclusive handlers run one at a time per key."""

    kind: ServiceKind = "object"

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] | None = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]]
        | None = None,
        *,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> Callable[[F], F]:
        """Register an ``async def handler(ctx: ObjectContext[, arg])`` (exclusive by default)."""
        if kind not in ("exclusive", "shared", None):
            raise ValueError(f"kind must be 'exclusive' or 'shared', not {kind!r}")
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=enable_lazy_state,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._add(
            kind or "exclusive",
            name,
            accept,
            content_type,
            input_serde,
            output_serde,
            options,
            invocation_context_managers,
            hooks,
            journal_mismatch,
        )


class Workflow(_ServiceBase):
    """A workflow: ``main`` runs once per workflow id; shared handlers interact with it."""

    kind: ServiceKind = "workflow"

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]]
        | None = None,
        *,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> Callable[[F], F]:
        """Register the workflow's main handler, ``async def run(ctx: WorkflowContext[, arg])``."""
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            workflow_retention=workflow_retention,
            enable_lazy_state=enable_lazy_state,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._add(
            "workflow",
            name,
            accept,
            content_type,
            input_serde,
            output_serde,
            options,
            invocation_context_managers,
            hooks,
            journal_mismatch,
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], typing.AsyncContextManager[None]]]
        | None = None,
        *,
        hooks: Sequence[Hook] | None = None,
        journal_mismatch: MismatchBehavior | None = None,
    ) -> Callable[[F], F]:
        """Register a shared handler, ``async def h(ctx: WorkflowSharedContext[, arg])``."""
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=enable_lazy_state,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._add(
            "shared",
            name,
            accept,
            content_type,
            input_serde,
            output_serde,
            options,
            invocation_context_managers,
            hooks,
            journal_mismatch,
        )


AnyService = Service | VirtualObject | Workflow


def handler_from_callable(wrapper: Callable[..., Any]) -> Handler:
    """The handler a decorated function was registered as (TypeError if it was not)."""
    handler = getattr(wrapper, "__restate_handler__", None)
    if not isinstance(handler, Handler):
        raise TypeError(
            f"{getattr(wrapper, '__qualname__', wrapper)!r} is not a handler: decorate it with "
            "@service.handler() (or @object.handler(), @workflow.main()...)"
        )
    return handler


__all__ = [
    "AnyService",
    "Handler",
    "HandlerOptions",
    "InvocationRetryPolicy",
    "Service",
    "ServiceTag",
    "VirtualObject",
    "Workflow",
    "handler_from_callable",
]
