"""Durable LangChain agents: ``create_agent(model, tools, middleware=[RestateMiddleware()])``
run inside a Restate handler journals every model call and tool call, so a retried or
resumed invocation picks up where it stopped instead of asking the model (or doing a tool's
side effect) again. Needs ``pip install 'framework[langchain]'``.
"""

from framework.ext._common import require, restate_context, restate_object_context

require("langchain.agents.middleware", "langchain", "framework.ext.langchain")

from framework.ext.langchain._middleware import RestateMiddleware  # noqa: E402

__all__ = ["RestateMiddleware", "restate_context", "restate_object_context"]
