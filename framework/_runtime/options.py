"""The options of a ``ctx.run`` step: how its result is serialized and how a failing closure
is retried. The context builds them; the invocation driver applies them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from framework.serde import DefaultSerde, Serde

T = TypeVar("T")


@dataclass
class RunOptions(Generic[T]):
    """How ``ctx.run_typed`` serializes a step's result and retries a failing closure.

    With no retry field set, a failing closure is retried forever with the server's
    policy. Once ``max_attempts`` or ``max_duration`` is reached the step is recorded as
    a TerminalError, which the handler can catch.
    """

    serde: Serde[T] = field(default_factory=DefaultSerde)
    type_hint: type[T] | None = None
    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    max_retry_duration: timedelta | None = None


DEFAULT_RUN_OPTIONS: RunOptions[Any] = RunOptions()
