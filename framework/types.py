"""The official SDK's ``restate.types``: the harness environment and a hint helper."""

import types as _types
import typing
from typing import TYPE_CHECKING, Any, Literal

from framework.client import RestateClient

if TYPE_CHECKING:
    from framework.testing import HarnessEnvironment


def extract_core_type(annotation: Any) -> tuple[Literal["optional", "simple"], Any]:
    """``("optional", T)`` for ``Optional[T]`` / ``T | None``, else ``("simple", annotation)``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is _types.UnionType:
        members = typing.get_args(annotation)
        if len(members) == 2 and type(None) in members:
            return "optional", members[0] if members[1] is type(None) else members[1]
    return "simple", annotation


def __getattr__(name: str) -> Any:
    # The harness (and what it imports) loads only when its environment type is asked for.
    if name == "HarnessEnvironment":
        from framework.testing import HarnessEnvironment

        return HarnessEnvironment
    raise AttributeError(f"module 'framework.types' has no attribute {name!r}")


__all__ = ["HarnessEnvironment", "RestateClient", "extract_core_type"]
