"""What every server process shares: importing the app by reference, its logging, the
timeouts, dying with its supervisor."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from framework._endpoint.asgi import ASGIApp
from framework._runtime.determinism import GUARD_ENV
from framework._runtime.determinism import install as install_determinism_guard
from framework._runtime.logging import configure_default_logging
from framework.exceptions import AppLoadError

if TYPE_CHECKING:  # hypercorn is optional: pip install 'framework[hypercorn]'
    from hypercorn.config import Config


KEEP_ALIVE_TIMEOUT = 3600.0  # seconds; the server closes idle connections itself (5 min)

GRACEFUL_TIMEOUT = 3.0  # seconds given to open requests on shutdown

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# Set by ``python -m framework dev`` on the service it runs: after importing the app, the
# service writes the source files of every loaded module there (JSON list), to be watched.
MODULES_FILE_ENV = "FRAMEWORK_DEV_MODULES_FILE"


def load_app(ref: str) -> ASGIApp:
    """Import ``"module:attribute"`` (the attribute may be dotted) and return the app.

    With ``FRAMEWORK_DETERMINISM_GUARD`` set (``dev`` sets it), the determinism guard is
    installed first, so that the app's modules bind the guarded functions.
    """
    if os.environ.get(GUARD_ENV, "off").lower() != "off":
        install_determinism_guard()
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppLoadError(
            f"{ref!r} is not an app reference; write MODULE:ATTRIBUTE, e.g. services.app:app"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppLoadError(
                f"cannot import module {module_name!r} (from {ref!r}): no module named "
                f"{missing!r}. Run from the directory that contains it, or add that directory "
                "to PYTHONPATH."
            ) from None
        raise
    target: Any = module
    done: list[str] = []
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            owner = f"{module_name}:{'.'.join(done)}" if done else f"module {module_name}"
            raise AppLoadError(
                f"{owner} has no attribute {part!r} (from {ref!r}); check the name after ':'"
            ) from None
        done.append(part)
    if not callable(target):
        raise AppLoadError(f"{ref!r} is a {type(target).__name__}, not an ASGI app")
    return cast(ASGIApp, target)


def log_level_number(log_level: str | None) -> int | None:
    if log_level is None:
        return None
    if log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    level: int = getattr(logging, log_level.upper())
    return level


def setup_logging(log_level: str | None, config: Config | None = None) -> None:
    """INFO (or ``log_level``) records to stderr tagged with the invocation id, unless the
    app configured logging; the server's lines (hypercorn's ``config``, or granian's through
    ``granian_log_config``) go through the same handlers."""
    level = log_level_number(log_level)
    if not configure_default_logging(logging.INFO if level is None else level) and level:
        logging.getLogger().setLevel(level)  # the app's handlers, at the level asked for
    if config is not None:
        config.errorlog = logging.getLogger("hypercorn.error")


def report_loaded_modules() -> None:
    """For ``python -m framework dev``: write the source files of the loaded modules."""
    target = os.environ.get(MODULES_FILE_ENV)
    if not target:
        return
    files = sorted(
        {
            str(Path(path).resolve())
            for module in list(sys.modules.values())
            if isinstance(path := getattr(module, "__file__", None), str) and path.endswith(".py")
        }
    )
    partial = Path(f"{target}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(files))
    partial.replace(target)


def die_with_parent(signum: signal.Signals = signal.SIGTERM) -> None:
    """On Linux, get ``signum`` when the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signum))  # PR_SET_PDEATHSIG
