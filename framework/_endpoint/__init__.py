"""The endpoint layer: the ASGI app, routing, discovery, request identity and the
per-invocation pump between one HTTP stream and the invocation runtime."""

from framework._endpoint.app import RestateApp

__all__ = ["RestateApp"]
