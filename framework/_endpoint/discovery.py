"""The endpoint manifest that the server reads from ``GET /discover``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from framework._api.services import AnyService, Handler, HandlerOptions
from framework.serde import Serde

MANIFEST_CONTENT_TYPES = {
    version: f"application/vnd.restate.endpointmanifest.v{version}+json" for version in (2, 3, 4)
}

_SERVICE_TYPES = {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}
_HANDLER_TYPES = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}


class ManifestError(Exception):
    """The services use an option the negotiated manifest version cannot carry."""


def negotiate_manifest_version(accept: str | None) -> int | None:
    """The highest manifest version both sides speak, or None."""
    if not accept:
        return None
    for version in sorted(MANIFEST_CONTENT_TYPES, reverse=True):
        if MANIFEST_CONTENT_TYPES[version] in accept:
            return version
    return None


def _ms(value: timedelta | None) -> int | None:
    return None if value is None else int(value / timedelta(milliseconds=1))


def _options(options: HandlerOptions, manifest_version: int, where: str) -> dict[str, Any]:
    v3 = {
        "inactivityTimeout": _ms(options.inactivity_timeout),
        "abortTimeout": _ms(options.abort_timeout),
        "journalRetention": _ms(options.journal_retention),
        "idempotencyRetention": _ms(options.idempotency_retention),
        "workflowCompletionRetention": _ms(options.workflow_retention),
        "enableLazyState": options.enable_lazy_state,
        "ingressPrivate": options.ingress_private,
    }
    policy = options.invocation_retry_policy
    v4: dict[str, Any] = {}
    if policy is not None:
        v4 = {
            "retryPolicyInitialInterval": _ms(policy.initial_interval),
            "retryPolicyExponentiationFactor": policy.exponentiation_factor,
            "retryPolicyMaxInterval": _ms(policy.max_interval),
            "retryPolicyMaxAttempts": policy.max_attempts,
            "retryPolicyOnMaxAttempts": policy.on_max_attempts.upper()
            if policy.on_max_attempts
            else None,
        }
    out: dict[str, Any] = {}
    for minimum, fields in ((3, v3), (4, v4)):
        for key, value in fields.items():
            if value is None:
                continue
            if manifest_version < minimum:
                raise ManifestError(
                    f"{where} sets {key!r}, which needs endpoint manifest v{minimum}, but the "
                    f"Restate server only accepts up to v{manifest_version}: upgrade the "
                    "server or remove the option"
                )
            out[key] = value
    return out


def _add_schema(payload: dict[str, Any], serde: Serde[Any]) -> None:
    """Describe the payload's type (the Restate UI and OpenAPI show it), if known."""
    describe = getattr(serde, "json_schema", None)
    if describe is None:
        return
    try:
        schema = describe()
    except Exception:  # a type the schema generator cannot describe: say nothing
        return
    if schema is not None:
        payload["jsonSchema"] = schema


def _handler_entry(handler: Handler, manifest_version: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": handler.name}
    if handler.kind is not None:
        entry["ty"] = _HANDLER_TYPES[handler.kind]
    entry["input"] = {}
    if handler.takes_input:
        entry["input"] = {"required": False, "contentType": handler.accept}
        _add_schema(entry["input"], handler.input_serde)
    entry["output"] = {"setContentTypeIfEmpty": False}
    if not handler.void_output:
        entry["output"]["contentType"] = handler.content_type
        _add_schema(entry["output"], handler.output_serde)
    if handler.description:
        entry["documentation"] = handler.description
    if handler.options.metadata:
        entry["metadata"] = dict(handler.options.metadata)
    entry.update(
        _options(handler.options, manifest_version, f"{handler.service_name}/{handler.name}")
    )
    return entry


def build_manifest(
    services: list[AnyService],
    manifest_version: int,
    *,
    protocol_mode: str,
    min_protocol_version: int,
    max_protocol_version: int,
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict; raises ManifestError for unsupported options."""
    entries = []
    for service in services:
        entry: dict[str, Any] = {
            "name": service.name,
            "ty": _SERVICE_TYPES[service.kind],
            "handlers": [_handler_entry(h, manifest_version) for h in service.handlers.values()],
        }
        if service.description:
            entry["documentation"] = service.description
        if service.options.metadata:
            entry["metadata"] = dict(service.options.metadata)
        entry.update(_options(service.options, manifest_version, service.name))
        entries.append(entry)
    return {
        "protocolMode": protocol_mode,
        "minProtocolVersion": min_protocol_version,
        "maxProtocolVersion": max_protocol_version,
        "services": entries,
    }
