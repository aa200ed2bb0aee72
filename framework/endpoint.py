"""The official SDK's ``restate.endpoint``: building the ASGI app from services."""

from framework._codec import JournalValueCodec, JournalValueCodecProvider
from framework._endpoint import Endpoint, app
from framework._services import Service, VirtualObject, Workflow

__all__ = [
    "Endpoint",
    "JournalValueCodec",
    "JournalValueCodecProvider",
    "Service",
    "VirtualObject",
    "Workflow",
    "app",
]
