"""Integrations with agent libraries and OpenTelemetry, each in its own module and each
importing its library only when imported itself (``import framework`` imports none of them):

- ``framework.ext.pydantic``: pydantic-ai agents (``pip install 'framework[pydantic-ai]'``)
- ``framework.ext.openai``: OpenAI Agents SDK (``framework[openai]``)
- ``framework.ext.adk``: Google ADK (``framework[adk]``)
- ``framework.ext.langchain``: LangChain agents (``framework[langchain]``)
- ``framework.ext.tracing``: OpenTelemetry tracers that journal nothing twice
  (``framework[tracing]``)
- ``framework.ext.turnstile``: a deterministic order for concurrent tool calls (no extra)

Each agent integration follows the same rules: every model request is a durable step,
tools reach the Restate context and run their side effects as durable steps, a
TerminalError raised in a tool fails the run, and suspension or cancellation unwinds the
agent instead of becoming a tool result.
"""
