"""The official SDK's ``restate.entry_codec``: journal value codecs (see
``framework._runtime.codec``: what passes through one, and where to configure it)."""

from framework._runtime.codec import JournalValueCodec, JournalValueCodecProvider

__all__ = ["JournalValueCodec", "JournalValueCodecProvider"]
