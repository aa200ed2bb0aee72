"""Following a log file: the harness's ``follow_logs`` / ``stream_logs`` copy the server's and
the service's logs to stderr as they grow."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO

__all__ = ["LogFollower"]


class LogFollower:
    """Copies the lines a log file gains to stderr, each after ``[prefix]``, from a daemon
    thread (started at once; the file may not exist yet)."""

    def __init__(self, path: Path, prefix: str) -> None:
        self._path = path
        self._prefix = prefix
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"follow-{prefix}")
        self.thread.start()

    def _run(self) -> None:
        handle: IO[str] | None = None
        try:
            while not self._done.is_set():
                if handle is None:
                    try:
                        handle = self._path.open(errors="replace")
                    except FileNotFoundError:
                        self._done.wait(0.1)
                        continue
                line = handle.readline()
                if line:
                    sys.stderr.write(f"[{self._prefix}] {line}")
                else:
                    self._done.wait(0.1)
        finally:
            if handle is not None:
                handle.close()

    def stop(self) -> None:
        """Stop following (within a couple of seconds)."""
        self._done.set()
        self.thread.join(2.0)
