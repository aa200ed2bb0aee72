"""The public names of ``restate.ext`` in restate-sdk 1.2.0 and their parameter lists, read
off the wheel's source (names and parameters only), as ``framework.ext`` must offer them.

A function maps to its parameter names; a class to its public methods (and ``__init__``),
each to its parameter names without ``self``; ``*args``/``**kwargs`` keep their stars.
"""

from __future__ import annotations

from typing import Any

OFFICIAL_EXT_API: dict[str, dict[str, Any]] = {
    "framework.ext.adk": {
        "RestateEventSummarizer": {
            "__init__": ("inner", "max_retries"),
            "from_llm": ("llm", "prompt_template", "max_retries"),
            "from_summarizer": ("summarizer", "max_retries"),
            "maybe_summarize_events": ("events",),
        },
        "RestatePlugin": {
            "__init__": ("run_options",),
            "after_agent_callback": ("agent", "callback_context"),
            "after_run_callback": ("invocation_context",),
            "after_tool_callback": ("tool", "tool_args", "tool_context", "result"),
            "before_agent_callback": ("agent", "callback_context"),
            "before_model_callback": ("callback_context", "llm_request"),
            "before_tool_callback": ("tool", "tool_args", "tool_context"),
            "on_tool_error_callback": ("tool", "tool_args", "tool_context", "error"),
        },
        "RestateSessionService": {
            "append_event": ("session", "event"),
            "create_session": ("app_name", "user_id", "state", "session_id"),
            "ctx": (),
            "delete_session": ("app_name", "user_id", "session_id"),
            "flush_session_state": ("session",),
            "get_session": ("app_name", "user_id", "session_id", "config"),
            "has_session": ("session_id",),
            "list_sessions": ("app_name", "user_id"),
        },
        "restate_context": (),
        "restate_object_context": (),
    },
    "framework.ext.langchain": {
        "RestateMiddleware": {
            "__init__": ("run_options",),
            "awrap_model_call": ("request", "handler"),
            "awrap_tool_call": ("request", "handler"),
        },
        "restate_context": (),
        "restate_object_context": (),
    },
    "framework.ext.openai": {
        "DurableRunner": {
            "run": ("starting_agent", "input", "use_restate_session", "run_options", "**kwargs")
        },
        "durable_function_tool": (
            "func",
            "name_override",
            "description_override",
            "docstring_style",
            "use_docstring_info",
            "failure_error_function",
            "strict_mode",
            "is_enabled",
        ),
        "propagate_cancellation": ("failure_error_function",),
        "raise_terminal_errors": ("context", "error"),
        "restate_context": (),
        "restate_object_context": (),
    },
    "framework.ext.pydantic": {
        "PydanticTypeAdapter": {
            "__init__": ("model_type",),
            "deserialize": ("buf",),
            "serialize": ("obj",),
        },
        "RestateAgent": {
            "__init__": ("wrapped", "event_stream_handler", "auto_wrap_tools", "run_options"),
            "event_stream_handler": (),
            "model": (),
            "run": (
                "user_prompt",
                "output_type",
                "message_history",
                "deferred_tool_results",
                "conversation_id",
                "model",
                "instructions",
                "deps",
                "model_settings",
                "usage_limits",
                "usage",
                "metadata",
                "retries",
                "infer_name",
                "toolsets",
                "event_stream_handler",
                "capabilities",
                "spec",
            ),
            "run_stream": (
                "user_prompt",
                "output_type",
                "message_history",
                "deferred_tool_results",
                "conversation_id",
                "model",
                "instructions",
                "deps",
                "model_settings",
                "usage_limits",
                "usage",
                "metadata",
                "retries",
                "infer_name",
                "toolsets",
                "event_stream_handler",
                "capabilities",
                "spec",
            ),
            "toolsets": (),
            "wrapped_event_stream_handler": ("ctx", "stream"),
        },
        "RestateContextRunToolSet": {
            "__init__": ("wrapped", "run_options"),
            "call_tool": ("name", "tool_args", "ctx", "tool"),
            "visit_and_replace": ("visitor",),
        },
        "RestateModelWrapper": {
            "__init__": ("wrapped", "run_options", "event_stream_handler"),
            "request": ("*args", "**kwargs"),
            "request_stream": (
                "messages",
                "model_settings",
                "model_request_parameters",
                "run_context",
            ),
        },
        "restate_context": (),
        "restate_object_context": (),
    },
    "framework.ext.tracing": {
        "RestateTracer": {
            "__init__": ("tracer",),
            "start_as_current_span": (
                "name",
                "context",
                "kind",
                "attributes",
                "links",
                "start_time",
                "record_exception",
                "set_status_on_exception",
                "end_on_exit",
            ),
            "start_span": (
                "name",
                "context",
                "kind",
                "attributes",
                "links",
                "start_time",
                "record_exception",
                "set_status_on_exception",
            ),
        },
        "RestateTracerProvider": {"__init__": ("provider",), "get_tracer": ("*args", "**kwargs")},
    },
    "framework.ext.turnstile": {
        "Turnstile": {
            "__init__": ("ids",),
            "allow_next_after": ("id",),
            "cancel_all": (),
            "cancel_all_after": ("id",),
            "wait_for": ("id",),
        }
    },
}
