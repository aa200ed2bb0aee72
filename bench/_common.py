"""Shared pieces of the benchmarks: the official SDK's venv, service processes, CPU readings.

The official SDK (``restate-sdk``) runs from its own venv, ``bench/.venv-official``, created
here on first use (or by ``.venv/bin/python bench/_common.py``). It is served on hypercorn by
``bench/serve_official.py`` in its venv, with the settings ``FRAMEWORK_SERVER=hypercorn
python -m framework serve`` uses; the ceiling and ``ours-hypercorn`` run on the same ones,
``ours`` on its own server (``python -m framework serve``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framework._dev.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OFFICIAL_VENV = BENCH / ".venv-official"
OFFICIAL_REQUIREMENTS = [
    "restate-sdk==1.2.0",
    "hypercorn",
    "h2",
    "httpx",
    # framework._server.hypercorn (the shared hypercorn settings) is imported through the framework
    # package, which needs these:
    "msgspec",
    "starlette",
    "anyio",
    # bench/agents.py runs restate.ext.pydantic, which imports pydantic-ai's MCP toolset.
    "pydantic-ai-slim[mcp]>=2,<3",
]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def official_python() -> Path:
    """The official venv's interpreter, creating the venv (pip install) when it is missing."""
    python = OFFICIAL_VENV / "bin" / "python"
    probe = [str(python), "-c", "import restate, hypercorn, msgspec, starlette"]
    if python.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
        return python
    print(f"creating {OFFICIAL_VENV} (restate-sdk==1.2.0) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(OFFICIAL_VENV)], check=True, timeout=300)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *OFFICIAL_REQUIREMENTS],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0:
        raise RuntimeError(
            f"pip install into {OFFICIAL_VENV} failed (exit {install.returncode}):\n"
            + (install.stdout + install.stderr)[-3000:]
        )
    subprocess.run(probe, check=True, timeout=60)
    return python


class BenchService(ServiceProcess):
    """A ``ServiceProcess`` that may run another interpreter or serve script.

    ``python=None`` serves with ``python -m framework serve`` (our venv); otherwise
    ``PYTHON bench/serve_official.py APP_REF --bind ...``.
    """

    def __init__(
        self,
        label: str,
        app_ref: str,
        *,
        python: Path | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(app_ref, env=env, log_path=log_path, cwd=ROOT)
        self.label = label
        self.python = python

    def command(self) -> list[str]:
        if self.python is None:
            return super().command()
        script = str(BENCH / "serve_official.py")
        return [str(self.python), script, self.app_ref, "--bind", f"127.0.0.1:{self.port}"]


def ours_service(log_path: Path, prefix: str = "") -> BenchService:
    """Our framework serving ``bench.handlers:app``."""
    env = {"BENCH_SDK": "framework", "BENCH_PREFIX": prefix}
    return BenchService("ours", "bench.handlers:app", env=env, log_path=log_path)


def official_service(log_path: Path, prefix: str = "") -> BenchService:
    """The official SDK serving ``bench.handlers:app`` from its own venv."""
    env = {"BENCH_SDK": "official", "BENCH_PREFIX": prefix}
    return BenchService(
        "official", "bench.handlers:app", python=official_python(), env=env, log_path=log_path
    )


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        stat = handle.read()
    # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    return stat[stat.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its living descendants (a served app runs in granian's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its descendants (all their threads),
    from /proc/PID/stat."""
    total = 0
    for each in process_tree(pid):
        try:
            fields = _stat_fields(each)
        except OSError:
            continue  # exited between the listing and the read
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds a set of processes spent between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns (the first left-aligned)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        return "  ".join(parts)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *[line(row) for row in cells[1:]]])


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23x`` (``-`` when ``b`` is zero)."""
    return f"{a / b:.2f}x" if b else "-"


if __name__ == "__main__":
    print(official_python())


class Problems:
    """Correctness problems seen during a run, reported at the end (and failing it)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        print(f"  PROBLEM: {text}", flush=True)
        self.items.append(text)


class Ingress:
    """Keep-alive HTTP/1.1 connections to the ingress, opened as needed and reused.

    httpx spends a few ms of CPU per request, which on this 2-core machine would compete with
    the service and the server; this spends a fraction of that.
    """

    def __init__(self, base_url: str) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            for name, value in (headers or {}).items():
                head += f"{name}: {value}\r\n"
            if body is not None:
                head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + (body or b""))
            raw = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = raw.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            answer_headers = {}
            for line in lines:
                name, sep, value = line.partition(":")
                if sep:
                    answer_headers[name.strip().lower()] = value.strip()
            if "content-length" in answer_headers:
                content = await reader.readexactly(int(answer_headers["content-length"]))
            elif answer_headers.get("transfer-encoding", "").lower() == "chunked":
                content = await _read_chunked(reader)
            else:
                raise ValueError(f"answer without a length: {answer_headers}")
        except BaseException:
            writer.close()
            raise
        if answer_headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status, content

    async def aclose(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
