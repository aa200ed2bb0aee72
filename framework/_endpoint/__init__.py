"""The endpoint layer: ASGI app, routing, discovery and the per-invocation pump."""

from framework._endpoint.app import Endpoint, RestateApp, app

__all__ = ["Endpoint", "RestateApp", "app"]
