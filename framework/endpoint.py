"""The official SDK's ``restate.endpoint``: building the ASGI app from services."""

from framework._api.services import Service, VirtualObject, Workflow
from framework._endpoint import Endpoint, app
from framework._runtime.codec import JournalValueCodec, JournalValueCodecProvider

__all__ = [
    "Endpoint",
    "JournalValueCodec",
    "JournalValueCodecProvider",
    "Service",
    "VirtualObject",
    "Workflow",
    "app",
]
