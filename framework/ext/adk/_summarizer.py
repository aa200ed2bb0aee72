"""RestateEventSummarizer: ADK's event compaction with the summary made once, as a durable
step, and read from the journal on every replay."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import cast

from google.adk.apps.base_events_summarizer import BaseEventsSummarizer
from google.adk.apps.llm_event_summarizer import LlmEventSummarizer
from google.adk.events import Event
from google.adk.models import BaseLlm

from framework import RunOptions
from framework.exceptions import TerminalError
from framework.ext._common import restate_context
from framework.ext.adk._serde import ModelSerde
from framework.serde import Serde

logger = logging.getLogger(__name__)

# None (no summary) is journaled as an empty value.
_EVENT_SERDE = cast(Serde[Event | None], ModelSerde(Event))
_CANCELLED = 409


class RestateEventSummarizer(BaseEventsSummarizer):
    """Wraps a summarizer so that ``maybe_summarize_events`` is one durable step, tried
    ``max_retries`` more times after a failure. A summary that still fails is skipped
    (ADK's contract for a summarizer that could not compact), unless the invocation was
    cancelled."""

    # ADK's own summarizers skip BaseEventsSummarizer.__init__ (it only announces an
    # experimental feature), and so does this one.
    def __init__(self, inner: BaseEventsSummarizer, max_retries: int = 3) -> None:
        if max_retries < 0:
            raise ValueError("max_retries cannot be negative")
        self.inner = inner
        self.max_retries = max_retries

    @classmethod
    def from_llm(
        cls, llm: BaseLlm, prompt_template: str | None = None, max_retries: int = 3
    ) -> RestateEventSummarizer:
        """ADK's LLM summarizer with this model (and prompt), made durable."""
        return cls(LlmEventSummarizer(llm=llm, prompt_template=prompt_template), max_retries)

    @classmethod
    def from_summarizer(
        cls, summarizer: BaseEventsSummarizer, max_retries: int = 3
    ) -> RestateEventSummarizer:
        """Any summarizer of yours, made durable."""
        return cls(summarizer, max_retries)

    async def maybe_summarize_events(self, *, events: list[Event]) -> Event | None:
        options: RunOptions[Event | None] = RunOptions(
            serde=_EVENT_SERDE,
            max_attempts=self.max_retries + 1,
            initial_retry_interval=timedelta(seconds=1),
            retry_interval_factor=2.0,
            max_retry_interval=timedelta(seconds=30),
        )
        try:
            return await restate_context().run_typed(
                "summarize events", self.inner.maybe_summarize_events, options, events=events
            )
        except TerminalError as error:
            if error.status_code == _CANCELLED:
                raise
            logger.warning("events not summarized: %s", error.message)
            return None
