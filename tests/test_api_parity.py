"""Every public module path and name of the official SDK (restate-sdk 1.2.0) exists under
``framework`` with the same parameters, so a module written for it runs here after changing
``restate`` to ``framework`` in its imports. Extra parameters of ours come after the official
ones and have defaults.

What the official SDK exports but framework deliberately does not is listed in
``NOT_PROVIDED`` with the reason; everything else must be there.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from tests.official_api import OFFICIAL_API

pytestmark = pytest.mark.fast

_VM = "a type of the official SDK's Rust state machine (restate.vm); framework has its own"
_RUNTIME = "a piece of the official SDK's invocation runtime, not an API a handler uses"
_BUILDER = "how the official SDK builds handlers internally; use the decorators"

NOT_PROVIDED: dict[tuple[str, str], str] = {
    **{
        ("framework.asyncio", name): _VM
        for name in (
            "AllCompletedUnresolvedFuture",
            "FirstCompletedUnresolvedFuture",
            "SingleUnresolvedFuture",
        )
    },
    ("framework.asyncio", "ServerDurableFuture"): _RUNTIME,
    ("framework.asyncio", "ServerInvocationContext"): _RUNTIME,
    **{
        ("framework.server_context", name): _VM
        for name in (
            "DoProgressAnyCompleted",
            "DoProgressCancelSignalReceived",
            "DoProgressExecuteRun",
            "DoProgressWaitExternalProgress",
            "Failure",
            "Invocation",
            "NotReady",
            "RunRetryConfig",
            "SingleUnresolvedFuture",
            "Suspended",
            "VMWrapper",
        )
    },
    **{
        ("framework.server_context", name): _RUNTIME
        for name in (
            "DisconnectedException",
            "Handler",
            "JournalValueCodec",
            "LazyFuture",
            "ReceiveChannel",
            "ScopedContext",
            "ServerCallDurableFuture",
            "ServerDurableFuture",
            "ServerDurablePromise",
            "ServerDurableSleepFuture",
            "ServerInvocationContext",
            "ServerScopedContext",
            "ServerSendHandle",
            "ServerTeardownEvent",
            "Tasks",
            "async_value",
            "extract_core_type",
            "handler_from_callable",
            "invoke_handler",
            "update_restate_context_is_replaying",
        )
    },
    **{
        (module, name): _BUILDER
        for module in ("framework.service", "framework.object", "framework.workflow")
        for name in ("HandlerIO", "make_handler")
    },
    ("framework.client", "Client.do_call"): "the official client's request plumbing; use the calls",
    ("framework.client", "Client.do_raw_call"): "the official client's request plumbing",
    ("framework.client", "Client.post"): "the official client's request plumbing",
    ("framework.serde", "Msgspec"): "the official SDK's optional-import shim for msgspec",
    ("framework.serde", "MsgspecJsonAPI"): "the official SDK's optional-import shim for msgspec",
    ("framework.serde", "try_import_from_dacite"): "an optional-import shim; dacite is ours",
    ("framework.serde", "try_import_msgspec_api"): "an optional-import shim; msgspec is ours",
    ("framework.serde", "try_import_pydantic_base_model"): "an optional-import shim",
}


def _entries() -> list[tuple[str, str, Any]]:
    return [
        (module, name, spec)
        for module, names in OFFICIAL_API.items()
        for name, spec in names.items()
        if (module, name) not in NOT_PROVIDED
    ]


def _parameters(obj: Any) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(obj).parameters.values() if p.name not in ("self", "cls")]


def _label(parameter: inspect.Parameter) -> str:
    prefixes: dict[object, str] = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}
    return prefixes.get(parameter.kind, "") + parameter.name


def _check_parameters(where: str, ours: Any, official: tuple[str, ...]) -> None:
    parameters = _parameters(ours)
    labels = [_label(p) for p in parameters]
    assert labels[: len(official)] == list(official), (
        f"{where}: parameters {labels}, the official SDK has {list(official)}"
    )
    for extra in parameters[len(official) :]:
        optional = extra.default is not inspect.Parameter.empty or extra.kind in (
            extra.VAR_POSITIONAL,
            extra.VAR_KEYWORD,
        )
        assert optional, f"{where}: our extra parameter {extra.name!r} needs a default"


def test_every_official_module_imports() -> None:
    for module in OFFICIAL_API:
        importlib.import_module(module)


@pytest.mark.parametrize(("module", "name", "spec"), _entries(), ids=lambda v: str(v)[:40])
def test_official_name_exists_with_its_parameters(module: str, name: str, spec: Any) -> None:
    obj = getattr(importlib.import_module(module), name, None)
    assert obj is not None, f"{module} has no {name!r}, which the official SDK exports"
    where = f"{module}.{name}"
    if isinstance(spec, tuple):
        assert callable(obj), f"{where} must be callable"
        _check_parameters(where, obj, spec)
    elif isinstance(spec, dict):
        assert inspect.isclass(obj), f"{where} must be a class"
        for member, member_spec in spec.items():
            if (module, f"{name}.{member}") in NOT_PROVIDED:
                continue
            attribute = inspect.getattr_static(obj, member, None)
            assert attribute is not None, f"{where} has no {member!r}"
            if isinstance(member_spec, tuple):
                target = getattr(obj, member)
                if isinstance(attribute, property):
                    continue  # a method officially, a property here: reads the same
                _check_parameters(f"{where}.{member}", target, member_spec)


def test_not_provided_names_are_really_official() -> None:
    # The exclusion list must not hide names the official SDK never had.
    for module, name in NOT_PROVIDED:
        owner, _, member = name.partition(".")
        assert owner in OFFICIAL_API.get(module, {}), (module, name)
        if member:
            assert member in OFFICIAL_API[module][owner], (module, name)
