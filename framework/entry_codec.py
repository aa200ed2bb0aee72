"""The official SDK's ``restate.entry_codec``: journal value codecs (see ``framework._codec``:
what passes through one, and where to configure it)."""

from framework._codec import JournalValueCodec, JournalValueCodecProvider

__all__ = ["JournalValueCodec", "JournalValueCodecProvider"]
