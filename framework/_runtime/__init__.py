"""One invocation attempt, without HTTP: the driver that runs a handler and its steps over
the journal state machine, and what it keeps per attempt (logging, tracing, value codec)."""
