"""Load: many concurrent invocations through a real restate-server, and what they cost in memory.

Three phases, each on a freshly started service process (``bench/load_handlers.py``), every
answer checked and every durable step's side effect counted in a ledger file (exactly once):

1. ``mixed``: ``N`` (1000) invocations of ``Load/mixed`` (three ``ctx.run`` steps, a call to a
   virtual object that gets and sets state and runs a step, a durable ``ctx.sleep``), all sent
   at once with ``/send`` and idempotency keys, then attached to. Reported: total time,
   invocations/s, CPU per invocation of the service and the restate-server, the service's RSS
   before/after and its peak (``VmHWM``).
2. ``inflight``: ``N`` (500, 2000) invocations of ``Load/hold`` held in flight in the service
   at once (a ``ctx.run`` whose async closure waits until this script lets go). Reported:
   ``(RSS with N - RSS idle) / N`` per SDK, against the target (at most 20 KB each).
3. ``sleepers``: ``N`` (10,000) invocations of ``Load/nap`` (one 30 s durable sleep), sent
   one-way, waited for until all are suspended (``sys_invocation``); then the service must run
   no more asyncio tasks than idle (``Load/live``: a suspended invocation costs the service
   nothing); its live allocated blocks (after a GC), open sockets and RSS are reported (what
   stays is per HTTP/2 connection the server keeps open, and RSS keeps the high-water mark:
   CPython rarely hands freed memory back to the OS); then all are let complete and checked.

Phases 1 and 2 run on a restate-server with default settings except its invoker's
concurrent-invocation limit (1000 by default), raised so that 2000 can be in flight at once.
Phase 3 runs on a second server with the default invoker limit (at most 1000 in flight in the
service at once, the rest queued in the server) whose invoker suspends an invocation after 1 s
of inactivity (the default, 1 min, would keep a 30 s sleep in flight in the service); see
``--inactivity``.

The official SDK (``bench/.venv-official``, created on first use) runs phases 1 and 2 side by
side with ours (``--no-official`` skips it; ``--sleepers-official`` adds it to phase 3).

Run: ``.venv/bin/python bench/load.py`` (about 3-4 minutes); ``--help`` lists the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    BenchService,
    Ingress,
    Problems,
    cpu_seconds,
    official_python,
    process_tree,
    table,
)
from framework._dev.restate_server import RestateServer

APP = "bench.load_handlers:app"
PREFIXES = {"ours": "", "official": "O"}
INFLIGHT_TARGET_KB = 20.0
# With every sleeper suspended, the service must hold no task for any of them: what it still
# holds beyond idle is per HTTP/2 connection the server keeps open (header tables, settings),
# reported beside.
SLEEPERS_LIVE_TASKS_BOUND = 20
INVOKER_LIMIT_ENV = "RESTATE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT"
INACTIVITY_ENV = "RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT"
REQUEST_TIMEOUT = 60.0
ATTACH_TIMEOUT = 180.0
SETTLE_TIMEOUT = 120.0


# -- the service process: memory and CPU -----------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM``... (kB) from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if name.startswith("Vm") or name.startswith("Rss"):
                values[name] = int(parts[0])
    return values


def open_sockets(pid: int) -> int:
    """How many sockets process ``pid`` and its workers have open (connections, listeners)."""
    count = 0
    for each in process_tree(pid):
        for fd in Path(f"/proc/{each}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += os.readlink(fd).startswith("socket:")
    return count


def _tree_total(pid: int, field: str) -> int:
    # A served app runs in worker processes under the one started: count them all.
    return sum(proc_status(each).get(field, 0) for each in process_tree(pid))


def rss_kb(pid: int) -> int:
    return _tree_total(pid, "VmRSS")


def hwm_kb(pid: int) -> int:
    return _tree_total(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    """Reset the processes' ``VmHWM`` to their current RSS (``clear_refs`` 5; Linux >= 4.0)."""
    for each in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{each}/clear_refs", "w") as handle:
            handle.write("5")


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


# -- the ledger ------------------------------------------------------------------------------


class Ledger:
    """The lines the handlers' steps appended (``"<id> <step>"``), counted, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._offset = 0
        self._partial = b""

    def refresh(self) -> collections.Counter[tuple[str, str]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return self.counts
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            id, _, step = line.decode().partition(" ")
            self.counts[(id, step)] += 1
        return self.counts

    def count(self, tag: str, step: str) -> int:
        """How many ids of ``tag`` have at least one ``step`` line."""
        self.refresh()
        return sum(1 for (id, s) in self.counts if s == step and id.startswith(f"{tag}-"))

    def check(self, ids: Iterable[str], steps: Iterable[str]) -> list[str]:
        """Problems: every (id, step) must appear exactly once."""
        self.refresh()
        wrong = []
        for id in ids:
            for step in steps:
                n = self.counts.get((id, step), 0)
                if n != 1:
                    wrong.append(f"{id} {step} x{n}")
        return wrong


_TRANSPORT_ERRORS = (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError)


async def call(
    ingress: Ingress,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = REQUEST_TIMEOUT,
    attempts: int = 3,
) -> tuple[int, bytes]:
    """One request, retried on transport errors (only ever for idempotent ones: ``/send`` with
    an idempotency key, attach); raises the last error."""
    for attempt in range(attempts):
        try:
            return await asyncio.wait_for(ingress.request(method, path, body, headers), timeout)
        except _TRANSPORT_ERRORS:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def for_each(count: int, concurrency: int, fn: Callable[[int], Awaitable[None]]) -> None:
    """``fn(i)`` for ``i`` in ``range(count)``, ``concurrency`` at a time."""
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            await fn(i)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def send_all(
    ingress: Ingress,
    path: str,
    tag: str,
    count: int,
    body: Callable[[int], dict[str, Any]],
    concurrency: int,
    problems: Problems,
) -> dict[int, str]:
    """``count`` one-way sends to ``path`` (``.../send``) with idempotency keys ``TAG-i``;
    the invocation id of each."""
    ids: dict[int, str] = {}
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            status, content = await call(
                ingress,
                "POST",
                path,
                json.dumps(body(i)).encode(),
                {"idempotency-key": f"{tag}-{i}"},
            )
        except _TRANSPORT_ERRORS as error:
            errors.append(f"send {i}: {type(error).__name__}: {error}")
            return
        if status not in (200, 202):
            errors.append(f"send {i}: HTTP {status}: {content[:200]!r}")
            return
        ids[i] = json.loads(content)["invocationId"]

    await for_each(count, concurrency, one)
    if errors:
        problems.add(f"{tag}: {len(errors)} sends failed, e.g. {errors[:3]}")
    return ids


async def attach_all(
    ingress: Ingress, ids: dict[int, str], concurrency: int, problems: Problems, tag: str
) -> dict[int, Any]:
    """Attach to each invocation; its decoded JSON result by index."""
    results: dict[int, Any] = {}
    errors: list[str] = []
    items = sorted(ids.items())

    async def one(k: int) -> None:
        i, invocation_id = items[k]
        try:
            status, content = await call(
                ingress,
                "GET",
                f"/restate/invocation/{invocation_id}/attach",
                timeout=ATTACH_TIMEOUT,
            )
        except _TRANSPORT_ERRORS as error:
            errors.append(f"attach {i}: {type(error).__name__}: {error}")
            return
        if status != 200:
            errors.append(f"attach {i}: HTTP {status}: {content[:200]!r}")
            return
        results[i] = json.loads(content)

    await for_each(len(items), concurrency, one)
    if errors:
        problems.add(f"{tag}: {len(errors)} attaches failed, e.g. {errors[:3]}")
    return results


# -- the admin API -----------------------------------------------------------------------------


async def status_counts(
    server: RestateServer, service: str, handler: str, tag: str
) -> dict[str, int]:
    """``{status: count}`` of ``service/handler`` invocations whose idempotency key is ``TAG-*``."""
    rows = await asyncio.to_thread(
        server.query,
        "SELECT status, count(*) AS n FROM sys_invocation "
        f"WHERE target_service_name = '{service}' AND target_handler_name = '{handler}' "
        f"AND idempotency_key LIKE '{tag}-%' GROUP BY status",
    )
    return {str(row["status"]): int(row["n"]) for row in rows}


async def wait_for(
    what: str,
    probe: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    timeout: float,
    interval: float = 0.5,
) -> tuple[bool, Any]:
    """Poll ``probe`` until ``done(value)`` or ``timeout``; (reached, last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return True, value
        if time.monotonic() > deadline:
            print(f"  gave up waiting for {what} after {timeout:.0f}s: {value}", flush=True)
            return False, value
        await asyncio.sleep(interval)


# -- phase 1: mixed ----------------------------------------------------------------------------


@dataclass
class MixedResult:
    label: str
    count: int
    send_s: float = 0.0
    total_s: float = 0.0
    service_cpu: float = 0.0
    server_cpu: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    peak: int = 0
    ok: bool = False


async def run_mixed(
    server: RestateServer,
    service: BenchService,
    ingress: Ingress,
    ledger: Ledger,
    *,
    prefix: str,
    tag: str,
    count: int,
    sleep_ms: int = 300,
    keys: int | None = None,
    concurrency: int = 64,
    attach_concurrency: int = 200,
    problems: Problems,
) -> MixedResult:
    """``count`` mixed invocations at once; every answer, counter value and step checked."""
    assert service.pid is not None and server.pid is not None
    keys = keys or max(1, count // 20)
    result = MixedResult(service.label, count)
    before = len(problems.items)
    reset_peak(service.pid)
    result.rss_before = rss_kb(service.pid)
    svc0, srv0 = cpu_seconds(service.pid), cpu_seconds(server.pid)
    t0 = time.perf_counter()

    def body(i: int) -> dict[str, Any]:
        return {"id": f"{tag}-{i}", "key": f"{tag}-k{i % keys}", "sleep_ms": sleep_ms}

    ids = await send_all(
        ingress, f"/{prefix}Load/mixed/send", tag, count, body, concurrency, problems
    )
    result.send_s = time.perf_counter() - t0
    answers = await attach_all(ingress, ids, attach_concurrency, problems, tag)
    result.total_s = time.perf_counter() - t0
    result.service_cpu = cpu_seconds(service.pid) - svc0
    result.server_cpu = cpu_seconds(server.pid) - srv0
    result.peak = hwm_kb(service.pid)
    result.rss_after = rss_kb(service.pid)

    # Every answer right; per counter key, the values are exactly 1..n (each add once).
    wrong = [
        i
        for i, answer in answers.items()
        if not (isinstance(answer, dict) and answer.get("id") == f"{tag}-{i}")
        or answer.get("sum") != 6
    ]
    if len(answers) != count:
        problems.add(f"{tag}: {count - len(answers)} invocations gave no answer")
    if wrong:
        problems.add(f"{tag}: {len(wrong)} wrong answers, e.g. {[answers[i] for i in wrong[:3]]}")
    by_key: dict[int, list[int]] = collections.defaultdict(list)
    for i, answer in answers.items():
        if isinstance(answer, dict):
            by_key[i % keys].append(answer.get("count", -1))
    for key, values in sorted(by_key.items()):
        expected = len(range(key, count, keys))
        if sorted(values) != list(range(1, expected + 1)):
            problems.add(
                f"{tag}: counter k{key} answered {sorted(values)[:8]}..., not 1..{expected}"
            )
            break
    # Every step's side effect exactly once.
    id_list = [f"{tag}-{i}" for i in range(count)]
    bad = ledger.check(id_list, ("a", "b", "c", "count"))
    if bad:
        problems.add(f"{tag}: ledger has {len(bad)} steps not run exactly once, e.g. {bad[:5]}")
    # Exactly one invocation per idempotency key, and one counter call each; none unfinished.
    mixed_status = await status_counts(server, f"{prefix}Load", "mixed", tag)
    if mixed_status != {"completed": count}:
        problems.add(f"{tag}: {prefix}Load/mixed invocations by status {mixed_status}")
    rows = await asyncio.to_thread(
        server.query,
        "SELECT status, count(*) AS n FROM sys_invocation "
        f"WHERE target_service_name = '{prefix}LoadCounter' "
        f"AND target_service_key LIKE '{tag}-k%' GROUP BY status",
    )
    counter_status = {str(row["status"]): int(row["n"]) for row in rows}
    if counter_status != {"completed": count}:
        problems.add(f"{tag}: {prefix}LoadCounter/add invocations by status {counter_status}")
    result.ok = len(problems.items) == before
    return result


# -- phase 2: in flight ------------------------------------------------------------------------


@dataclass
class InflightResult:
    label: str
    count: int
    rss_idle: int = 0
    rss_held: int = 0
    rss_after: int = 0
    running: int = 0
    ok: bool = False

    @property
    def kb_each(self) -> float:
        return (self.rss_held - self.rss_idle) / self.count if self.count else 0.0


async def run_inflight(
    server: RestateServer,
    service: BenchService,
    ingress: Ingress,
    ledger: Ledger,
    workdir: Path,
    *,
    prefix: str,
    tag: str,
    count: int,
    concurrency: int = 64,
    hold_timeout: float = 120.0,
    problems: Problems,
) -> InflightResult:
    """Hold ``count`` invocations in flight in the service at once; RSS idle vs held."""
    assert service.pid is not None
    result = InflightResult(service.label, count)
    before = len(problems.items)
    release = workdir / f"release-{tag}"
    result.rss_idle = rss_kb(service.pid)

    def body(i: int) -> dict[str, Any]:
        return {"id": f"{tag}-{i}", "release": str(release), "timeout_s": hold_timeout}

    ids = await send_all(
        ingress, f"/{prefix}Load/hold/send", tag, count, body, concurrency, problems
    )

    async def entered() -> int:
        return ledger.count(tag, "hold")

    reached, n = await wait_for(
        f"{count} holds in flight", entered, lambda n: n >= count, 60.0 + count / 50, 0.2
    )
    if not reached:
        problems.add(f"{tag}: only {n} of {count} invocations reached the service")
    await asyncio.sleep(1.0)  # let the last ones settle (their writes flushed, buffers freed)
    readings = []
    for _ in range(3):
        readings.append(rss_kb(service.pid))
        await asyncio.sleep(0.2)
    result.rss_held = max(readings)
    statuses = await status_counts(server, f"{prefix}Load", "hold", tag)
    result.running = statuses.get("running", 0)
    if result.running != count:
        problems.add(f"{tag}: {statuses} while held, expected {count} running")
    release.touch()
    reached, statuses = await wait_for(
        f"{count} holds completed",
        lambda: status_counts(server, f"{prefix}Load", "hold", tag),
        lambda s: s.get("completed", 0) >= count,
        SETTLE_TIMEOUT,
    )
    if not reached:
        problems.add(f"{tag}: not all held invocations completed: {statuses}")
    sample = dict(random.sample(sorted(ids.items()), min(20, len(ids))))
    answers = await attach_all(ingress, sample, 20, problems, tag)
    wrong = {i: a for i, a in answers.items() if a != f"{tag}-{i}"}
    if wrong or len(answers) != len(sample):
        problems.add(f"{tag}: sample answers wrong or missing: {wrong}")
    bad = ledger.check([f"{tag}-{i}" for i in range(count)], ("hold",))
    if bad:
        problems.add(f"{tag}: ledger has {len(bad)} holds not run exactly once, e.g. {bad[:5]}")
    result.rss_after = rss_kb(service.pid)
    result.ok = len(problems.items) == before
    return result


async def warm_holds(
    ingress: Ingress, workdir: Path, prefix: str, tag: str, count: int, problems: Problems
) -> None:
    """``count`` hold invocations that are released at once (a warm-up)."""
    release = workdir / f"release-{tag}"
    release.touch()
    body = json.dumps({"id": tag, "release": str(release), "timeout_s": 10.0}).encode()

    async def one(i: int) -> None:
        status, content = await call(ingress, "POST", f"/{prefix}Load/hold", body)
        if status != 200:
            problems.add(f"{tag}: warm-up hold answered HTTP {status}: {content[:200]!r}")

    await for_each(count, 16, one)


async def warm_mixed(
    ingress: Ingress, prefix: str, tag: str, count: int, problems: Problems
) -> None:
    """``count`` mixed calls (a warm-up: imports, connections, first allocations)."""

    async def one(i: int) -> None:
        body = {"id": f"{tag}-{i}", "key": f"{tag}-k{i % 4}", "sleep_ms": 10}
        status, content = await call(
            ingress, "POST", f"/{prefix}Load/mixed", json.dumps(body).encode()
        )
        if status != 200:
            problems.add(f"{tag}: warm-up call answered HTTP {status}: {content[:200]!r}")

    await for_each(count, 16, one)


# -- phase 3: sleepers -------------------------------------------------------------------------


@dataclass
class SleepersResult:
    label: str
    count: int
    sleep_s: float
    send_s: float = 0.0
    suspended_s: float = 0.0  # from the first send until all were suspended
    done_s: float = 0.0  # from the first send until all completed
    rss_idle: int = 0
    peak_sending: int = 0
    rss_suspended: int = 0
    rss_after: int = 0
    server_rss_before: int = 0
    server_rss_suspended: int = 0
    live_idle: dict[str, int] = field(default_factory=dict)
    live_suspended: dict[str, int] = field(default_factory=dict)
    sockets_idle: int = 0
    sockets_suspended: int = 0
    all_suspended: bool = False
    ok: bool = False


async def run_sleepers(
    server: RestateServer,
    service: BenchService,
    ingress: Ingress,
    ledger: Ledger,
    *,
    prefix: str,
    tag: str,
    count: int,
    sleep_s: float,
    concurrency: int = 64,
    sample: int = 20,
    problems: Problems,
    between: Callable[[], Awaitable[None]] | None = None,
) -> SleepersResult:
    """``count`` invocations each in one durable sleep: all suspended, the service's RSS near
    idle meanwhile, then all complete (ledger exact) and a sample's answers are checked.

    ``between`` runs once the RSS was read, while they still sleep (the test fits its
    mixed load there).
    """
    assert service.pid is not None and server.pid is not None
    result = SleepersResult(service.label, count, sleep_s)
    before = len(problems.items)
    result.live_idle = await live(ingress, prefix)
    result.sockets_idle = open_sockets(service.pid)
    result.rss_idle = rss_kb(service.pid)
    result.server_rss_before = rss_kb(server.pid)
    reset_peak(service.pid)
    t0 = time.perf_counter()
    first_wake = time.monotonic() + sleep_s

    def body(i: int) -> dict[str, Any]:
        return {"id": f"{tag}-{i}", "sleep_ms": round(sleep_s * 1000)}

    ids = await send_all(
        ingress, f"/{prefix}Load/nap/send", tag, count, body, concurrency, problems
    )
    result.send_s = time.perf_counter() - t0
    result.peak_sending = hwm_kb(service.pid)
    reached, statuses = await wait_for(
        f"{count} suspended",
        lambda: status_counts(server, f"{prefix}Load", "nap", tag),
        lambda s: s.get("suspended", 0) >= count,
        max(0.0, first_wake - time.monotonic() - 0.5),
    )
    result.suspended_s = time.perf_counter() - t0
    result.all_suspended = reached
    result.rss_suspended = rss_kb(service.pid)
    result.server_rss_suspended = rss_kb(server.pid)
    result.live_suspended = await live(ingress, prefix)
    result.sockets_suspended = open_sockets(service.pid)
    if not reached:
        problems.add(f"{tag}: not all {count} suspended before the first timer was due: {statuses}")
    if between is not None:
        await between()
    reached, statuses = await wait_for(
        f"{count} completed",
        lambda: status_counts(server, f"{prefix}Load", "nap", tag),
        lambda s: s.get("completed", 0) >= count,
        max(0.0, first_wake - time.monotonic()) + result.send_s + SETTLE_TIMEOUT,
        1.0,
    )
    result.done_s = time.perf_counter() - t0
    if statuses != {"completed": count}:
        problems.add(f"{tag}: {prefix}Load/nap invocations by status {statuses}")
    picked = dict(random.sample(sorted(ids.items()), min(sample, len(ids))))
    answers = await attach_all(ingress, picked, sample, problems, tag)
    wrong = {i: a for i, a in answers.items() if a != f"{tag}-{i}"}
    if wrong or len(answers) != len(picked):
        problems.add(f"{tag}: sample answers wrong or missing: {wrong}")
    bad = ledger.check([f"{tag}-{i}" for i in range(count)], ("woke",))
    if bad:
        problems.add(f"{tag}: ledger has {len(bad)} wake-ups not exactly once, e.g. {bad[:5]}")
    result.rss_after = rss_kb(service.pid)
    result.ok = len(problems.items) == before
    return result


async def live(ingress: Ingress, prefix: str) -> dict[str, int]:
    """``Load/live``: the service's live allocations and asyncio tasks now."""
    status, body = await call(ingress, "POST", f"/{prefix}Load/live")
    if status != 200:
        raise RuntimeError(f"{prefix}Load/live answered {status}: {body[:300]!r}")
    answer: dict[str, int] = json.loads(body)
    return answer


# -- the run -----------------------------------------------------------------------------------


def make_service(label: str, workdir: Path) -> tuple[BenchService, Ledger]:
    """The load handlers served by ``label``'s SDK, with its own ledger file."""
    ledger_path = workdir / f"ledger-{label}.txt"
    env = {
        "BENCH_SDK": "framework" if label == "ours" else "official",
        "BENCH_PREFIX": PREFIXES[label],
        "LOAD_LEDGER": str(ledger_path),
    }
    python = official_python() if label == "official" else None
    service = BenchService(label, APP, python=python, env=env, log_path=workdir / f"{label}.log")
    return service, Ledger(ledger_path)


def fresh(service: BenchService) -> None:
    """(Re)start the service process on its port, so each phase starts from a clean one."""
    if service.running():
        service.restart()
    else:
        service.start()


def report(
    mixed: list[MixedResult], inflight: list[InflightResult], sleepers: list[SleepersResult]
) -> None:
    if mixed:
        rows = []
        for r in mixed:
            rows.append(
                [
                    r.label,
                    r.count,
                    f"{r.send_s:.1f}",
                    f"{r.total_s:.1f}",
                    f"{r.count / r.total_s:.0f}" if r.total_s else "-",
                    f"{r.service_cpu / r.count * 1e3:.2f}",
                    f"{r.server_cpu / r.count * 1e3:.2f}",
                    mb(r.rss_before),
                    mb(r.peak),
                    mb(r.rss_after),
                    "ok" if r.ok else "FAILED",
                ]
            )
        print("\n1. mixed invocations at once (3 runs + object call with state + sleep each)")
        print(
            table(
                [
                    "sdk",
                    "invocations",
                    "sent in s",
                    "done in s",
                    "inv/s",
                    "svc CPU ms/inv",
                    "server CPU ms/inv",
                    "RSS before MB",
                    "peak MB",
                    "RSS after MB",
                    "checks",
                ],
                rows,
            )
        )
    if inflight:
        rows = []
        for held in inflight:
            verdict = "meets" if held.kb_each <= INFLIGHT_TARGET_KB else "MISSES"
            rows.append(
                [
                    held.label,
                    held.count,
                    mb(held.rss_idle),
                    mb(held.rss_held),
                    mb(held.rss_after),
                    f"{held.kb_each:.1f}",
                    f"{verdict} <= {INFLIGHT_TARGET_KB:.0f} KB",
                    "ok" if held.ok else "FAILED",
                ]
            )
        print("\n2. memory per invocation in flight in the service ((RSS held - RSS idle) / N)")
        print(
            table(
                [
                    "sdk",
                    "N in flight",
                    "RSS idle MB",
                    "RSS held MB",
                    "RSS after MB",
                    "KB per inv",
                    "target",
                    "checks",
                ],
                rows,
            )
        )
        ours = {h.count: h.kb_each for h in inflight if h.label == "ours"}
        official = {h.count: h.kb_each for h in inflight if h.label == "official"}
        for n in sorted(ours.keys() & official.keys()):
            ratio = f"{ours[n] / official[n]:.2f}x" if official[n] > 0 else "-"
            print(f"   N={n}: ours {ours[n]:.1f} KB, official {official[n]:.1f} KB ({ratio})")
    if sleepers:
        rows = []
        for s in sleepers:
            delta = s.rss_suspended - s.rss_idle
            rows.append(
                [
                    s.label,
                    s.count,
                    f"{s.sleep_s:.0f}",
                    f"{s.send_s:.1f}",
                    f"{s.suspended_s:.1f}" if s.all_suspended else "never",
                    mb(s.rss_idle),
                    mb(s.peak_sending),
                    mb(s.rss_suspended),
                    f"{delta / 1024:+.1f}",
                    f"{delta * 1024 / s.count:.0f}",
                    f"{mb(s.server_rss_before)} -> {mb(s.server_rss_suspended)}",
                    f"{s.live_suspended.get('tasks', 0) - s.live_idle.get('tasks', 0):+d}",
                    f"{s.live_suspended.get('blocks', 0) - s.live_idle.get('blocks', 0):+d}",
                    f"{s.sockets_idle} -> {s.sockets_suspended}",
                    f"{s.done_s:.1f}",
                    "ok" if s.ok else "FAILED",
                ]
            )
        print("\n3. invocations sleeping at once, held by the server (suspended)")
        print(
            table(
                [
                    "sdk",
                    "sleeping",
                    "sleep s",
                    "sent in s",
                    "all susp. at s",
                    "svc RSS idle MB",
                    "peak sending MB",
                    "RSS all susp. MB",
                    "delta MB",
                    "bytes/sleeper",
                    "server RSS MB",
                    "live tasks",
                    "live blocks",
                    "svc sockets",
                    "all done at s",
                    "checks",
                ],
                rows,
            )
        )


@contextlib.asynccontextmanager
async def restate(
    env: dict[str, str], log_path: Path
) -> AsyncIterator[tuple[RestateServer, Ingress]]:
    """A restate-server with ``env`` and a client of its ingress, both closed at the end."""
    server = RestateServer(env=env, log_path=log_path)
    try:
        server.start()
        ingress = Ingress(server.ingress_url)
        try:
            yield server, ingress
        finally:
            await ingress.aclose()
    finally:
        server.stop()


async def run(args: argparse.Namespace, workdir: Path) -> int:
    problems = Problems()
    labels = ["ours"]
    if not args.no_official:
        try:
            official_python()
            labels.append("official")
        except Exception as error:  # no official venv: measure ours alone
            print(f"official SDK unavailable, measuring ours only: {error}", flush=True)
    services: dict[str, tuple[BenchService, Ledger]] = {
        label: make_service(label, workdir) for label in labels
    }
    phases = set(args.phases.split(","))
    mixed: list[MixedResult] = []
    inflight: list[InflightResult] = []
    sleepers: list[SleepersResult] = []
    started = time.perf_counter()
    limit = {INVOKER_LIMIT_ENV: str(args.invoker_limit)}
    try:
        if phases & {"mixed", "inflight"}:
            async with restate(limit, workdir / "restate-server.log") as (server, ingress):
                for service, _ledger in services.values():
                    fresh(service)
                    server.register(service.url)
                print(
                    f"restate-server {server.version().get('version', '?')}, {INVOKER_LIMIT_ENV}="
                    f"{args.invoker_limit}; SDKs: {', '.join(labels)}; logs in {workdir}",
                    flush=True,
                )
                if "mixed" in phases:
                    for label, (service, ledger) in services.items():
                        fresh(service)
                        prefix = PREFIXES[label]
                        await warm_mixed(ingress, prefix, f"warm-{label}", 40, problems)
                        print(f"mixed: {args.mixed} x {label} ...", flush=True)
                        result = await run_mixed(
                            server,
                            service,
                            ingress,
                            ledger,
                            prefix=prefix,
                            tag=f"mixed-{label}",
                            count=args.mixed,
                            sleep_ms=args.mixed_sleep_ms,
                            concurrency=args.concurrency,
                            attach_concurrency=args.attach_concurrency,
                            problems=problems,
                        )
                        print(
                            f"  {result.count / result.total_s:.0f} inv/s, peak "
                            f"{mb(result.peak)} MB",
                            flush=True,
                        )
                        mixed.append(result)
                if "inflight" in phases:
                    for n in [int(x) for x in args.inflight.split(",") if x]:
                        for label, (service, ledger) in services.items():
                            fresh(service)
                            prefix = PREFIXES[label]
                            await warm_holds(
                                ingress, workdir, prefix, f"warmhold-{label}-{n}", 100, problems
                            )
                            await warm_mixed(ingress, prefix, f"warm-{label}-{n}", 20, problems)
                            await asyncio.sleep(0.5)
                            print(f"in flight: {n} x {label} ...", flush=True)
                            r = await run_inflight(
                                server,
                                service,
                                ingress,
                                ledger,
                                workdir,
                                prefix=prefix,
                                tag=f"hold-{label}-{n}",
                                count=n,
                                concurrency=args.concurrency,
                                problems=problems,
                            )
                            print(f"  {r.kb_each:.1f} KB per invocation", flush=True)
                            inflight.append(r)
        if "sleepers" in phases:
            # The server's own concurrency limit (1000 by default) bounds how many of them are
            # in flight in the service at once; the rest wait in the server.
            env = {INACTIVITY_ENV: args.inactivity}
            async with restate(env, workdir / "restate-server-sleepers.log") as (server, ingress):
                for label in labels if args.sleepers_official else ["ours"]:
                    service, ledger = services[label]
                    fresh(service)
                    server.register(service.url)
                    prefix = PREFIXES[label]
                    await warm_mixed(ingress, prefix, f"warmnap-{label}", 40, problems)
                    await asyncio.sleep(0.5)
                    print(
                        f"sleepers: {args.sleepers} x {label}, sleeping {args.sleep_s:.0f} s "
                        f"({INACTIVITY_ENV}={args.inactivity}) ...",
                        flush=True,
                    )
                    s = await run_sleepers(
                        server,
                        service,
                        ingress,
                        ledger,
                        prefix=prefix,
                        tag=f"nap-{label}",
                        count=args.sleepers,
                        sleep_s=args.sleep_s,
                        concurrency=args.concurrency,
                        problems=problems,
                    )
                    print(
                        f"  all suspended at {s.suspended_s:.1f}s, service RSS "
                        f"{mb(s.rss_idle)} -> {mb(s.rss_suspended)} MB, done at "
                        f"{s.done_s:.1f}s",
                        flush=True,
                    )
                    sleepers.append(s)
    finally:
        for service, _ledger in services.values():
            service.stop()
    report(mixed, inflight, sleepers)
    for s in sleepers:
        tasks = s.live_suspended.get("tasks", 0) - s.live_idle.get("tasks", 0)
        if s.label == "ours" and tasks > SLEEPERS_LIVE_TASKS_BOUND:
            problems.add(
                f"ours: with {s.count} invocations suspended the service still runs {tasks:+d} "
                f"tasks over idle (bound {SLEEPERS_LIVE_TASKS_BOUND})"
            )
    print(f"\ntotal time {time.perf_counter() - started:.0f}s")
    if problems.items:
        print(f"\n{len(problems.items)} problem(s):")
        for item in problems.items:
            print(f"- {item}")
        return 1
    print("no correctness problems: every answer checked, every step's side effect exactly once")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="mixed,inflight,sleepers", help="comma-separated")
    parser.add_argument("--mixed", type=int, default=1000, help="mixed invocations at once")
    parser.add_argument("--mixed-sleep-ms", type=int, default=300, help="their ctx.sleep")
    parser.add_argument(
        "--inflight", default="500,2000", help="comma-separated N held in flight at once"
    )
    parser.add_argument("--sleepers", type=int, default=10_000, help="invocations sleeping")
    parser.add_argument("--sleep-s", type=float, default=30.0, help="their ctx.sleep, seconds")
    parser.add_argument(
        "--inactivity",
        default="1s",
        help="the sleepers' server's invoker inactivity timeout (when it suspends)",
    )
    parser.add_argument(
        "--invoker-limit",
        type=int,
        default=20_000,
        help="the server's concurrent-invocations limit (restate's default is 1000)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="connections sending")
    parser.add_argument("--attach-concurrency", type=int, default=200, help="attaching")
    parser.add_argument("--no-official", action="store_true", help="measure ours only")
    parser.add_argument(
        "--sleepers-official", action="store_true", help="run the sleepers phase for both SDKs"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep logs and ledgers")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    code = asyncio.run(run(args, workdir))
    if args.keep_logs or code:
        print(f"logs and ledgers: {workdir}")
    else:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    return code


if __name__ == "__main__":
    sys.exit(main())
