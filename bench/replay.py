"""Replay micro-benchmark: a prepared journal sent straight to the endpoint over h2c.

The journal is ``Start(known_entries=1+2N)``, ``Input(N)``, then for each step i
``RunCommand(name=f"step-{i}", completion_id=i+1)`` and
``RunCompletionNotification(value=json(i))``: a ``steps(N)`` invocation whose every
``ctx.run`` is already journaled, so the handler replays them all and answers
``Output(sum) + End`` without a single round trip.

Four endpoints, each in its own child process: ours (``framework`` on its own HTTP/2 server),
the official SDK (``restate-sdk`` 1.2.0 on hypercorn), ours on the same hypercorn settings,
and a ceiling on them that only reads the journal and answers canned frames. ``K`` client
requests run at once, each worker on its own h2c connection (httpcore can deadlock several
concurrent large uploads on one connection: a stream waiting for flow-control window may miss
the WINDOW_UPDATE another stream read, then sits until its read timeout). Every answer is
checked. Reported: invocations/s, the service process's CPU time per journal entry
(``/proc/PID/stat``), and ratios.

Run: ``.venv/bin/python bench/replay.py`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    BenchService,
    cpu_seconds,
    official_service,
    ours_service,
    ratio,
    table,
)
from bench.ceiling import CANNED_VALUE
from framework._protocol import (
    EndMessage,
    ErrorMessage,
    InputCommandMessage,
    Message,
    OutputCommandMessage,
    ProtocolError,
)
from tests.journals import decode_frames, journal, run_entries

PROTOCOL_VERSION = 6  # spoken by both SDKs and by restate-server 1.7 by default
CONTENT_TYPE = f"application/vnd.restate.invocation.v{PROTOCOL_VERSION}"
PATH = "/invoke/Bench/steps"
REQUEST_TIMEOUT = 30.0


class BenchFailure(RuntimeError):
    """An endpoint answered something other than the expected Output + End."""


def build_journal(n: int, offset: int = 0) -> bytes:
    """The whole request body replaying ``steps(n)``; step i's journaled result is i+offset.

    With ``offset`` 0 the journal holds what ``step_fn`` returns; another offset checks that
    an SDK answers from the journal rather than by running the steps again.
    """
    entries: list[Message] = [InputCommandMessage(value=msgspec.json.encode(n))]
    for i in range(n):
        entries.extend(run_entries(i + 1, f"step-{i}", msgspec.json.encode(i + offset)))
    return journal(*entries, id=bytes(range(16)), debug_id="inv_bench_replay", random_seed=7)


def describe(message: Message) -> str:
    if isinstance(message, ErrorMessage):
        return (
            f"ErrorMessage(code={message.code}, message={message.message!r}, "
            f"related_command_index={message.related_command_index}, "
            f"related_command_name={message.related_command_name!r}, "
            f"related_command_type={message.related_command_type})"
        )
    return repr(message)[:300]


def check_answer(response: httpx.Response, expected: bytes, label: str) -> None:
    """Fail loudly unless ``response`` is exactly Output(expected) + End."""
    if response.status_code != 200:
        raise BenchFailure(f"{label}: HTTP {response.status_code}: {response.text[:500]}")
    if response.headers.get("content-type") != CONTENT_TYPE:
        raise BenchFailure(f"{label}: content-type {response.headers.get('content-type')!r}")
    try:
        messages = decode_frames(response.content)
    except ProtocolError as error:
        raise BenchFailure(f"{label}: undecodable answer: {error}") from None
    ok = (
        len(messages) == 2
        and isinstance(messages[0], OutputCommandMessage)
        and messages[0].failure is None
        and messages[0].value == expected
        and isinstance(messages[1], EndMessage)
    )
    if not ok:
        got = "; ".join(describe(m) for m in messages) or "no frames"
        raise BenchFailure(f"{label}: expected Output({expected!r}) + End, got: {got}")


@dataclass
class Cell:
    """What one endpoint did with one journal size (summed over rounds)."""

    invocations: int = 0
    wall: float = 0.0
    service_cpu: float = 0.0
    client_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.invocations / self.wall if self.wall else 0.0


async def drive(
    clients: list[httpx.AsyncClient],
    body: bytes,
    expected: bytes,
    label: str,
    concurrency: int,
    duration: float,
    min_invocations: int,
) -> tuple[int, list[float]]:
    """Send ``body`` from ``concurrency`` tasks (one connection each) until ``duration``
    passes; check each answer."""
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    headers = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline or len(latencies) < min_invocations:
            t0 = time.perf_counter()
            try:
                response = await client.post(PATH, content=body, headers=headers)
            except httpx.HTTPError as error:
                raise BenchFailure(
                    f"{label}: request {len(latencies) + 1} failed after "
                    f"{time.perf_counter() - t0:.1f}s: {type(error).__name__}: {error}"
                ) from error
            latencies.append(time.perf_counter() - t0)
            check_answer(response, expected, label)

    await asyncio.gather(*(worker(client) for client in clients[:concurrency]))
    return len(latencies), latencies


async def run(args: argparse.Namespace, workdir: Path) -> int:
    services: list[BenchService] = [
        ours_service(workdir / "ours.log"),
        official_service(workdir / "official.log"),
        # Ours on the official SDK's hypercorn settings, and the ceiling on them too.
        BenchService(
            "ours-hypercorn",
            "bench.handlers:app",
            env={"BENCH_SDK": "framework", "FRAMEWORK_SERVER": "hypercorn"},
            log_path=workdir / "ours-hypercorn.log",
        ),
        BenchService(
            "ceiling",
            "bench.ceiling:app",
            env={"FRAMEWORK_SERVER": "hypercorn"},
            log_path=workdir / "ceiling.log",
        ),
    ]
    try:
        for service in services:
            service.start()
        return await measure(args, services)
    except BenchFailure as error:
        print(f"\nFAILED: {error}", file=sys.stderr)
        for service in services:
            print(f"--- {service.label} log tail ---\n{service.log_tail(30)}", file=sys.stderr)
        return 1
    finally:
        for service in services:
            service.stop()


async def measure(args: argparse.Namespace, services: list[BenchService]) -> int:
    labels = [s.label for s in services]
    clients = {
        s.label: [
            httpx.AsyncClient(
                base_url=s.url,
                http1=False,
                http2=True,
                timeout=REQUEST_TIMEOUT,
                trust_env=False,
                limits=httpx.Limits(max_connections=1),
            )
            for _ in range(args.concurrency)
        ]
        for s in services
    }
    pids = {s.label: s.pid for s in services}
    results: dict[int, dict[str, Cell]] = {n: {label: Cell() for label in labels} for n in args.n}
    try:
        bodies = {n: build_journal(n) for n in args.n}
        sums = {n: msgspec.json.encode(sum(range(n))) for n in args.n}

        def expected(label: str, n: int) -> bytes:
            return CANNED_VALUE if label == "ceiling" else sums[n]

        # Warm up (and check every endpoint accepts the journal) with a small one first.
        small = 5
        warm_body, warm_sum = build_journal(small), msgspec.json.encode(sum(range(small)))
        k = args.concurrency
        offset_body = build_journal(small, offset=1000)
        offset_sum = msgspec.json.encode(sum(range(small)) + 1000 * small)
        for label, pool in clients.items():
            want = CANNED_VALUE if label == "ceiling" else warm_sum
            await drive(pool, warm_body, want, f"{label} (warm-up, N={small})", k, 0.5, k)
            want = CANNED_VALUE if label == "ceiling" else offset_sum
            await drive(pool, offset_body, want, f"{label} (journaled values)", 1, 0, 1)
            for n in args.n:
                await drive(pool, bodies[n], expected(label, n), f"{label} N={n}", 1, 0, 1)
        print(
            f"protocol v{PROTOCOL_VERSION}, K={args.concurrency} concurrent requests, each on its "
            f"own h2c connection, {args.rounds} rounds (order reversed every other round)"
        )
        for n in args.n:
            duration = args.duration * (args.long_factor if n >= 10_000 else 1.0)
            print(f"N={n}: journal {len(bodies[n]) / 1024:.0f} KiB, {duration:.0f}s per cell")
            for round_no in range(args.rounds):
                order = labels if round_no % 2 == 0 else labels[::-1]
                for label in order:
                    pid = pids[label]
                    assert pid is not None
                    cell = results[n][label]
                    cpu0, own0, t0 = cpu_seconds(pid), os.times(), time.perf_counter()
                    count, latencies = await drive(
                        clients[label],
                        bodies[n],
                        expected(label, n),
                        f"{label} N={n}",
                        args.concurrency,
                        duration,
                        args.concurrency,
                    )
                    own1 = os.times()
                    cell.wall += time.perf_counter() - t0
                    cell.service_cpu += cpu_seconds(pid) - cpu0
                    cell.client_cpu += (own1.user - own0.user) + (own1.system - own0.system)
                    cell.invocations += count
                    cell.latencies += latencies
    finally:
        for pool in clients.values():
            for client in pool:
                await client.aclose()
    report(results)
    return 0


def report(results: dict[int, dict[str, Cell]]) -> None:
    for n, cells in results.items():
        entries = 1 + 2 * n
        rows = []
        for label, cell in cells.items():
            per_inv_ms = cell.service_cpu / cell.invocations * 1e3
            per_entry_us = cell.service_cpu / (cell.invocations * entries) * 1e6
            mean_latency = sum(cell.latencies) / len(cell.latencies) * 1e3
            rows.append(
                [
                    label,
                    cell.invocations,
                    f"{cell.per_second:.1f}",
                    f"{mean_latency:.1f}",
                    f"{per_inv_ms:.2f}",
                    f"{per_entry_us:.2f}",
                    f"{cell.service_cpu / cell.wall * 100:.0f}%",
                    f"{cell.client_cpu / cell.invocations * 1e3:.2f}",
                ]
            )
        print(f"\n== replay steps(N={n}): {entries} journal entries per invocation ==")
        print(
            table(
                [
                    "endpoint",
                    "invocations",
                    "inv/s",
                    "mean ms",
                    "svc CPU ms/inv",
                    "svc CPU us/entry",
                    "svc CPU util",
                    "client CPU ms/inv",
                ],
                rows,
            )
        )

        def cpu_per_inv(cell: Cell) -> float:
            return cell.service_cpu / cell.invocations

        pairs = [("ours", "official"), ("ours-hypercorn", "official")]
        pairs += [(label, "ceiling") for label in ("ours", "ours-hypercorn", "official")]
        for mine, theirs in pairs:
            a, b = cells[mine], cells[theirs]
            print(
                f"{mine + ' / ' + theirs:<28} inv/s {ratio(a.per_second, b.per_second)}"
                f"  svc CPU/inv {ratio(cpu_per_inv(a), cpu_per_inv(b))}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, nargs="+", default=[1000, 10_000], help="steps per journal"
    )
    parser.add_argument("--concurrency", "-k", type=int, default=4)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell and round")
    parser.add_argument(
        "--long-factor", type=float, default=1.5, help="duration factor for N >= 10000"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep-logs", action="store_true", help="keep the service logs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    code = asyncio.run(run(args, workdir))
    if args.keep_logs or code:
        print(f"service logs: {workdir}")
    else:
        for log in workdir.iterdir():
            log.unlink()
        workdir.rmdir()
    return code


if __name__ == "__main__":
    sys.exit(main())
