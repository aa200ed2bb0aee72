"""A determinism guard for development: a warning (or, opted in, an error) when handler code
outside ``ctx.run`` reads the clock or draws randomness, naming the line and what to use.

Such a value differs on every replay: code that branches on it takes another path when the
server retries or resumes the invocation, and the journal no longer matches (570), typically
long after the deploy. Durable replacements exist: ``await ctx.time()``, ``ctx.random()``,
``ctx.uuid()``, or the call inside ``ctx.run`` (its result is journaled).

Installed by ``python -m framework dev`` (in the service it runs) and by the test harness,
with ``FRAMEWORK_DETERMINISM_GUARD=warn`` (the default there), ``fail`` or ``off``. It wraps
the module functions (``time.time``, ``random.random``, ``uuid.uuid4``, ``os.urandom``,
``secrets.token_hex``...) and looks only at calls made directly by your code while a handler
runs outside any ``ctx.run``: libraries, framework itself, ``ctx.run`` closures and code
outside handlers are left alone. Names bound before the guard was installed (``from time
import time`` in a module imported earlier) are not seen.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import secrets
import sys
import sysconfig
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from framework._runtime.invocation import current_invocation, inside_run

GUARD_ENV = "FRAMEWORK_DETERMINISM_GUARD"
Mode = Literal["warn", "fail", "off"]

_log = logging.getLogger("framework.determinism")


class NondeterminismError(RuntimeError):
    """Handler code read the clock or drew randomness outside ``ctx.run`` (guard mode
    ``fail``)."""


_TIME_HINT = "await ctx.time() (a journaled timestamp)"
_RANDOM_HINT = "ctx.random().{name}(...) (seeded per invocation)"
_UUID_HINT = "ctx.uuid() (stable across retries)"
_BYTES_HINT = "ctx.random().randbytes(n), or call it inside ctx.run"

# module -> function name -> what to use instead
_GUARDED: dict[ModuleType, dict[str, str]] = {
    time: {"time": _TIME_HINT, "time_ns": _TIME_HINT},
    random: {
        name: _RANDOM_HINT.format(name=name)
        for name in (
            "random",
            "randint",
            "randrange",
            "choice",
            "choices",
            "shuffle",
            "sample",
            "uniform",
            "getrandbits",
            "randbytes",
        )
    },
    uuid: {"uuid1": _UUID_HINT, "uuid4": _UUID_HINT},
    os: {"urandom": _BYTES_HINT},
    secrets: {
        name: _BYTES_HINT
        for name in ("token_bytes", "token_hex", "token_urlsafe", "randbelow", "choice")
    },
}

_FRAMEWORK = str(Path(__file__).resolve().parents[1])
_LIBRARIES = tuple(
    {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
)

_mode: Mode = "off"
_originals: dict[tuple[ModuleType, str], Callable[..., Any]] = {}
_reported: set[tuple[str, int]] = set()


def _user_call_site() -> tuple[str, int] | None:
    """Where the guarded function was called from, if that is the user's code."""
    frame = sys._getframe(2)
    filename = frame.f_code.co_filename
    if filename.startswith(_FRAMEWORK) or filename.startswith(_LIBRARIES):
        return None
    if filename.startswith("<"):  # frozen modules and the like
        return None
    return filename, frame.f_lineno


def _guard(qualified: str, hint: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _mode != "off" and current_invocation.get() is not None and inside_run.get() is None:
            site = _user_call_site()
            if site is not None:
                _report(qualified, hint, site)
        return original(*args, **kwargs)

    return guarded


def _report(qualified: str, hint: str, site: tuple[str, int]) -> None:
    message = (
        f"{site[0]}:{site[1]}: {qualified}() in handler code outside ctx.run gives another "
        f"value on every replay; use {hint}"
    )
    if _mode == "fail":
        raise NondeterminismError(message)
    if site not in _reported:  # once per line: a loop must not flood the log
        _reported.add(site)
        _log.warning("%s", message)


def install(mode: str | None = None) -> Mode:
    """Guard the clock and randomness functions (``mode`` defaults to the environment's
    ``FRAMEWORK_DETERMINISM_GUARD``, else ``warn``); returns the mode now in force."""
    global _mode
    chosen = (mode or os.environ.get(GUARD_ENV) or "warn").lower()
    if chosen not in ("warn", "fail", "off"):
        raise ValueError(f"{GUARD_ENV} must be warn, fail or off, not {chosen!r}")
    _mode = chosen  # type: ignore[assignment]
    if chosen != "off" and not _originals:
        for module, names in _GUARDED.items():
            for name, hint in names.items():
                original = getattr(module, name)
                _originals[(module, name)] = original
                setattr(module, name, _guard(f"{module.__name__}.{name}", hint, original))
    return _mode


def uninstall() -> None:
    """Put the original functions back."""
    global _mode
    _mode = "off"
    for (module, name), original in _originals.items():
        setattr(module, name, original)
    _originals.clear()
    _reported.clear()


__all__ = ["GUARD_ENV", "NondeterminismError", "install", "uninstall"]
