"""``env.state_of(...)``: a virtual object's (or workflow's) state, read and seeded from a
test through the admin API, values encoded as handlers encode them."""

from __future__ import annotations

import asyncio
from typing import Any

from framework._api.targets import resolve_handler
from framework._dev.admin import AdminClient
from framework._runtime.codec import JournalValueCodec
from framework.serde import DefaultSerde, Serde, serde_for_type

__all__ = ["ObjectState"]


class ObjectState:
    """The state of one object instance (``service``, ``key``). Values go through the serde
    a handler's ``ctx.get``/``ctx.set`` would use (JSON by default, or the given one) and the
    app's journal value codec, if the harness has one.

    Writes replace the instance's whole state at once; the server applies them before the
    object's next invocation runs, so seed state before calling the object, not meanwhile.
    """

    def __init__(
        self,
        admin: AdminClient,
        service: str,
        key: str,
        codec: JournalValueCodec | None = None,
    ) -> None:
        self.service = service
        self.key = key
        self._admin = admin
        self._codec = codec

    async def raw(self) -> dict[str, bytes]:
        """Every value as the server stores it (after the codec, if any)."""
        return await asyncio.to_thread(self._admin.object_state, self.service, self.key)

    async def get(self, name: str, type_hint: Any = None, serde: Serde[Any] | None = None) -> Any:
        """The value of ``name`` (None when unset)."""
        stored = (await self.raw()).get(name)
        return None if stored is None else await self._decode(stored, type_hint, serde)

    async def get_all(self, serde: Serde[Any] | None = None) -> dict[str, Any]:
        """Every value, decoded (as JSON unless ``serde`` says otherwise)."""
        return {
            name: await self._decode(stored, None, serde)
            for name, stored in (await self.raw()).items()
        }

    async def set(self, name: str, value: Any, serde: Serde[Any] | None = None) -> None:
        """Set ``name`` to ``value``, keeping the other values."""
        state = await self.raw()
        state[name] = self._encode(value, serde)
        await self._replace(state)

    async def set_all(self, values: dict[str, Any], serde: Serde[Any] | None = None) -> None:
        """Replace the whole state with ``values``."""
        await self._replace({name: self._encode(value, serde) for name, value in values.items()})

    async def clear(self, name: str) -> None:
        state = await self.raw()
        if state.pop(name, None) is not None:
            await self._replace(state)

    async def clear_all(self) -> None:
        await self._replace({})

    async def _replace(self, state: dict[str, bytes]) -> None:
        await asyncio.to_thread(self._admin.replace_object_state, self.service, self.key, state)

    def _encode(self, value: Any, serde: Serde[Any] | None) -> bytes:
        chosen = serde if serde is not None else serde_for_type(type(value))
        data = chosen.serialize(value)
        return data if self._codec is None else self._codec.encode(data)

    async def _decode(self, stored: bytes, type_hint: Any, serde: Serde[Any] | None) -> Any:
        data = stored if self._codec is None else await self._codec.decode(stored)
        chosen = (
            serde
            if serde is not None
            else (serde_for_type(type_hint) if type_hint is not None else DefaultSerde())
        )
        return chosen.deserialize(data)


def object_name(target: Any) -> str:
    """The service name of a VirtualObject/Workflow, one of its handlers, or a name."""
    if isinstance(target, str):
        return target
    name = getattr(target, "name", None)
    if isinstance(name, str) and hasattr(target, "handlers"):
        return name
    service, _handler, _info = resolve_handler(target, None, "env.state_of")
    return service
