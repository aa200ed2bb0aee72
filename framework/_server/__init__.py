"""How an ASGI app is served to the Restate server: granian (or hypercorn), workers,
graceful shutdown."""
