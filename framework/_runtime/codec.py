"""Journal value codecs: a transformation of every value the journal stores (encryption,
compression), applied after the serde on the way out and before it on the way in.

What passes through the codec: handler inputs and successful outputs, ``ctx.run`` results,
state values, call and send parameters and call results, awakeable, promise and signal
values. Failures (``TerminalError`` messages) and invocation ids never do.

The endpoint (``app(..., journal_value_codec=...)``), the ingress client
(``create_client(..., journal_value_codec=...)``) and the test harness take the same codec; a
provider (an async function returning the codec) is awaited once, at the first invocation,
for set-up such as loading a key.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable


class JournalValueCodec(abc.ABC):
    """Turns serialized values into what the journal stores, and back."""

    @abc.abstractmethod
    def encode(self, buf: bytes) -> bytes:
        """What to store for ``buf`` (already serialized; may be empty)."""

    @abc.abstractmethod
    async def decode(self, buf: bytes) -> bytes:
        """The serialized value ``buf`` (as stored) stands for."""


JournalValueCodecProvider = Callable[[], Awaitable[JournalValueCodec]]


class CodecSource:
    """The endpoint's codec: given, or built once by its provider on first use."""

    __slots__ = ("_codec", "_lock", "_provider")

    def __init__(self, codec_or_provider: JournalValueCodec | JournalValueCodecProvider) -> None:
        self._codec: JournalValueCodec | None = None
        self._provider: JournalValueCodecProvider | None = None
        if isinstance(codec_or_provider, JournalValueCodec):
            self._codec = codec_or_provider
        elif callable(codec_or_provider):
            self._provider = codec_or_provider
        else:
            raise TypeError(
                "journal_value_codec must be a JournalValueCodec or an async function returning "
                f"one, not {type(codec_or_provider).__name__}"
            )
        self._lock: asyncio.Lock | None = None

    async def get(self) -> JournalValueCodec:
        if self._codec is not None:
            return self._codec
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._codec is None:
                assert self._provider is not None
                codec = await self._provider()
                if not isinstance(codec, JournalValueCodec):
                    raise TypeError(
                        "the journal_value_codec provider must return a JournalValueCodec, not "
                        f"{type(codec).__name__}"
                    )
                self._codec = codec
        return self._codec


__all__ = ["CodecSource", "JournalValueCodec", "JournalValueCodecProvider"]
