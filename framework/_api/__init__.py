"""What a handler touches: services and their decorators, the contexts, durable futures and
their combinators, call targets. Imports the runtime below it, never the endpoint above."""
