"""Every public name of ``restate.ext.*`` (restate-sdk 1.2.0) exists under ``framework.ext.*``
with the same parameters, and importing ``framework`` imports no agent library."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from typing import Any

import pytest

from tests.official_ext_api import OFFICIAL_EXT_API

pytestmark = pytest.mark.fast


def _parameters(function: Any) -> tuple[str, ...]:
    names = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            names.append(f"*{parameter.name}")
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            names.append(f"**{parameter.name}")
        else:
            names.append(parameter.name)
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return tuple(names)


def _cases() -> list[tuple[str, str]]:
    return [(module, name) for module, names in OFFICIAL_EXT_API.items() for name in names]


@pytest.mark.parametrize(("module_name", "name"), _cases(), ids=lambda value: str(value))
def test_official_ext_name_exists_with_its_parameters(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    assert name in getattr(module, "__all__", ()), f"{module_name}.__all__ lacks {name}"
    ours = getattr(module, name)
    expected = OFFICIAL_EXT_API[module_name][name]
    if isinstance(expected, tuple):
        assert _parameters(ours) == expected
        return
    assert inspect.isclass(ours), f"{module_name}.{name} must be a class"
    for method, parameters in expected.items():
        attribute = inspect.getattr_static(ours, method, None)
        assert attribute is not None, f"{module_name}.{name} lacks {method}"
        if isinstance(attribute, property):
            assert parameters == (), f"{name}.{method} is a property here, a method there"
            continue
        assert _parameters(getattr(ours, method)) == parameters, f"{name}.{method}"


def test_importing_framework_imports_no_agent_library() -> None:
    libraries = ("pydantic_ai", "agents", "google.adk", "langchain", "langgraph")
    probe = (
        "import sys, framework, framework.ext; "
        f"print([m for m in {libraries!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
