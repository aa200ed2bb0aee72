"""End-to-end throughput through a real restate-server: ours vs the official SDK.

One restate-server for the whole run; four deployments are registered on it side by side
(via ``BENCH_PREFIX``): ours as ``Bench``/``BenchCounter`` on its own HTTP/2 server, the
official SDK as ``OBench``/``OBenchCounter`` on hypercorn, ours on the same hypercorn settings
as ``HBench``/``HBenchCounter``, and the ceiling (``bench/ceiling.py``: canned answers, no SDK
work, on hypercorn) as ``CBench``. For each workload -- ``noop``, ``steps(10)`` (ten
sequential ``ctx.run``), ``BenchCounter.add`` over 16 keys -- ``C`` concurrent HTTP/1.1
clients call the ingress for a fixed number of requests, each deployment in turn per round
(the ceiling on ``noop`` only), to spread drift. Every answer is checked (counter values per
key must be exactly 1..n), and after each run no invocation of the target service may be
left unfinished.

Reported per deployment: req/s, p50/p99 latency, and CPU ms per request of the service
process, of the restate-server and of this client process (``/proc/PID/stat``); then ratios
(ours/official, ours-on-hypercorn/official, and each against the ceiling).

Run: ``.venv/bin/python bench/e2e.py`` (about 4-5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    BenchService,
    Ingress,
    Problems,
    cpu_seconds,
    official_service,
    ours_service,
    percentile,
    ratio,
    table,
)
from framework._dev.restate_server import RestateServer

PREFIXES = {"ours": "", "official": "O", "ours-hypercorn": "H", "ceiling": "C"}
# Who runs which workload: the ceiling (bench/ceiling.py, canned answers on hypercorn) only
# makes sense for the no-op handler.
CEILING_WORKLOADS = ("noop",)
COUNTER_KEYS = 16
STEPS_N = 10
REQUEST_TIMEOUT = 60.0
SETTLE_TIMEOUT = 30.0


@dataclass
class Workload:
    """One kind of request: its URL, body and the check of each answer."""

    name: str
    count: int
    path: Callable[[str, str, int], str]  # (prefix, run_tag, i) -> path
    body: Callable[[int], bytes]
    service: str  # the service name without the prefix, for sys_invocation checks


def _workloads(scale: float) -> list[Workload]:
    return [
        Workload(
            "noop",
            round(2000 * scale),
            lambda prefix, tag, i: f"/{prefix}Bench/noop",
            lambda i: json.dumps(i).encode(),
            "Bench",
        ),
        Workload(
            f"steps({STEPS_N})",
            round(500 * scale),
            lambda prefix, tag, i: f"/{prefix}Bench/steps",
            lambda i: json.dumps(STEPS_N).encode(),
            "Bench",
        ),
        Workload(
            f"counter.add ({COUNTER_KEYS} keys)",
            round(1000 * scale),
            lambda prefix, tag, i: f"/{prefix}BenchCounter/{tag}-{i % COUNTER_KEYS}/add",
            lambda i: b"1",
            "BenchCounter",
        ),
    ]


@dataclass
class Run:
    """The result of one run of one workload against one SDK."""

    requests: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    service_cpu: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


class RawClient:
    """The lean keep-alive HTTP/1.1 client (``bench._common.Ingress``), JSON POSTs only.

    httpx spends about 4-5 ms of CPU per request here, enough to saturate one of the two
    cores before either SDK does; this one spends a fraction of that.
    """

    def __init__(self, base_url: str, connections: int) -> None:
        self._ingress = Ingress(base_url)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` as JSON; the status and the response body."""
        return await self._ingress.request("POST", path, body)

    async def aclose(self) -> None:
        await self._ingress.aclose()


class HttpxClient:
    """The same interface over ``httpx.AsyncClient`` (``--client httpx``)."""

    def __init__(self, base_url: str, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT, trust_env=False
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


Client = RawClient | HttpxClient


async def drive(
    client: Client,
    workload: Workload,
    prefix: str,
    tag: str,
    count: int,
    concurrency: int,
) -> tuple[list[float], dict[int, object], list[str]]:
    """``count`` requests from ``concurrency`` tasks; latencies, answers by index, errors."""
    next_index = 0
    latencies: list[float] = []
    answers: dict[int, object] = {}
    errors: list[str] = []

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                status, content = await asyncio.wait_for(
                    client.post(workload.path(prefix, tag, i), workload.body(i)),
                    REQUEST_TIMEOUT,
                )
            except (OSError, ValueError, asyncio.IncompleteReadError, httpx.HTTPError) as error:
                errors.append(f"request {i}: {type(error).__name__}: {error}")
                continue
            except TimeoutError:
                errors.append(f"request {i}: no answer within {REQUEST_TIMEOUT:.0f}s")
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"request {i}: HTTP {status}: {content[:300]!r}")
                continue
            answers[i] = json.loads(content)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, answers, errors


def check_answers(
    workload: Workload, answers: dict[int, object], count: int, label: str, problems: Problems
) -> None:
    if workload.name == "noop":
        wrong = [i for i, value in answers.items() if value != i]
    elif workload.name.startswith("steps"):
        wrong = [i for i, value in answers.items() if value != sum(range(STEPS_N))]
    else:
        by_key: dict[int, list[int]] = defaultdict(list)
        for i, value in answers.items():
            by_key[i % COUNTER_KEYS].append(value)  # type: ignore[arg-type]
        wrong = []
        for key, values in by_key.items():
            expected = list(range(1, len([i for i in range(count) if i % COUNTER_KEYS == key]) + 1))
            if sorted(values) != expected:
                wrong.append(key)
                problems.add(
                    f"{label} {workload.name}: key {key} returned {sorted(values)[:10]}..., "
                    f"expected 1..{len(expected)}"
                )
    if wrong and not workload.name.startswith("counter"):
        sample = {i: answers[i] for i in wrong[:5]}
        problems.add(f"{label} {workload.name}: {len(wrong)} wrong answers, e.g. {sample}")


def unfinished(server: RestateServer, service: str) -> list[dict[str, object]]:
    """Invocations of ``service`` that are not completed."""
    return server.query(
        "SELECT status, count(*) AS n FROM sys_invocation "
        f"WHERE target_service_name = '{service}' AND status != 'completed' GROUP BY status"
    )


def settle(server: RestateServer, service: str, label: str, problems: Problems) -> None:
    """Wait (bounded) until nothing of ``service`` is left unfinished; report what is."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    rows = unfinished(server, service)
    while rows and time.monotonic() < deadline:
        time.sleep(0.5)
        rows = unfinished(server, service)
    if rows:
        detail = server.query(
            "SELECT id, status, target, retry_count, last_failure FROM sys_invocation "
            f"WHERE target_service_name = '{service}' AND status != 'completed' LIMIT 5"
        )
        problems.add(f"{label} {service}: unfinished invocations {rows}; e.g. {detail}")


async def one_run(
    server: RestateServer,
    service: BenchService,
    client: Client,
    workload: Workload,
    tag: str,
    concurrency: int,
    problems: Problems,
) -> Run:
    label = service.label
    prefix = PREFIXES[label]
    assert service.pid is not None and server.pid is not None
    svc0, srv0, own0 = cpu_seconds(service.pid), cpu_seconds(server.pid), os.times()
    t0 = time.perf_counter()
    latencies, answers, errors = await drive(
        client, workload, prefix, tag, workload.count, concurrency
    )
    wall = time.perf_counter() - t0
    own1 = os.times()
    run = Run(
        requests=len(latencies),
        wall=wall,
        latencies=latencies,
        service_cpu=cpu_seconds(service.pid) - svc0,
        server_cpu=cpu_seconds(server.pid) - srv0,
        client_cpu=(own1.user - own0.user) + (own1.system - own0.system),
        errors=errors,
    )
    if errors:
        problems.add(f"{label} {workload.name}: {len(errors)} failed requests, e.g. {errors[:3]}")
    if label != "ceiling":  # its answers are canned
        check_answers(workload, answers, workload.count, label, problems)
    settle(server, prefix + workload.service, label, problems)
    print(
        f"  {workload.name:<22} {label:<8} {run.requests / wall:8.1f} req/s  "
        f"p50 {percentile(latencies, 0.5) * 1e3:6.1f} ms  "
        f"svc CPU {run.service_cpu / max(run.requests, 1) * 1e3:5.2f} ms/req",
        flush=True,
    )
    return run


def merge(runs: list[Run]) -> Run:
    total = Run()
    for run in runs:
        total.requests += run.requests
        total.wall += run.wall
        total.latencies += run.latencies
        total.service_cpu += run.service_cpu
        total.server_cpu += run.server_cpu
        total.client_cpu += run.client_cpu
        total.errors += run.errors
    return total


def throughput(run: Run) -> float:
    return run.requests / run.wall if run.wall else 0.0


def cpu_per_request(run: Run) -> float:
    return run.service_cpu / max(run.requests, 1)


def report(results: dict[str, dict[str, list[Run]]]) -> None:
    rows = []
    ratio_lines = []
    for workload, by_sdk in results.items():
        merged = {label: merge(runs) for label, runs in by_sdk.items()}
        for label, run in merged.items():
            n = max(run.requests, 1)
            per_run = "/".join(f"{r.requests / r.wall:.0f}" for r in by_sdk[label])
            rows.append(
                [
                    workload,
                    label,
                    run.requests,
                    f"{run.requests / run.wall:.1f}",
                    per_run,
                    f"{percentile(run.latencies, 0.5) * 1e3:.1f}",
                    f"{percentile(run.latencies, 0.99) * 1e3:.1f}",
                    f"{run.service_cpu / n * 1e3:.2f}",
                    f"{run.server_cpu / n * 1e3:.2f}",
                    f"{run.client_cpu / n * 1e3:.2f}",
                ]
            )
        pairs = [("ours", "official"), ("ours-hypercorn", "official")]
        pairs += [(label, "ceiling") for label in ("ours", "ours-hypercorn", "official")]
        for mine, theirs in pairs:
            if mine not in merged or theirs not in merged:
                continue
            a, b = merged[mine], merged[theirs]
            ratio_lines.append(
                f"{workload:<24}{mine + ' / ' + theirs:<28}"
                f" req/s {ratio(throughput(a), throughput(b))}"
                f"  p50 {ratio(percentile(a.latencies, 0.5), percentile(b.latencies, 0.5))}"
                f"  p99 {ratio(percentile(a.latencies, 0.99), percentile(b.latencies, 0.99))}"
                f"  svc CPU/req {ratio(cpu_per_request(a), cpu_per_request(b))}"
            )
    print()
    print(
        table(
            [
                "workload",
                "sdk",
                "requests",
                "req/s",
                "req/s per run",
                "p50 ms",
                "p99 ms",
                "svc CPU ms/req",
                "server CPU ms/req",
                "client CPU ms/req",
            ],
            rows,
        )
    )
    print("\nratios (req/s: higher is better; latency and CPU: lower is better)")
    print("\n".join(ratio_lines))


_LOG_PROBLEM = re.compile(r"Traceback|ERROR|Exception|error", re.IGNORECASE)
# hypercorn names its logger "hypercorn.error" even for its INFO start-up line.
_LOG_NOISE = ("Lifespan error", "Running on http")


def log_problems(service: BenchService) -> list[str]:
    lines = service.log_text().splitlines()
    return [
        line
        for line in lines
        if _LOG_PROBLEM.search(line) and not any(noise in line for noise in _LOG_NOISE)
    ]


async def run(args: argparse.Namespace, workdir: Path) -> int:
    problems = Problems()
    server = RestateServer(log_path=workdir / "restate-server.log")
    services = {
        "ours": ours_service(workdir / "ours.log", PREFIXES["ours"]),
        "official": official_service(workdir / "official.log", PREFIXES["official"]),
        # Ours on hypercorn, as the official SDK is served: the same server settings for both.
        "ours-hypercorn": BenchService(
            "ours-hypercorn",
            "bench.handlers:app",
            env={"BENCH_SDK": "framework", "BENCH_PREFIX": "H", "FRAMEWORK_SERVER": "hypercorn"},
            log_path=workdir / "ours-hypercorn.log",
        ),
        "ceiling": BenchService(
            "ceiling",
            "bench.ceiling:app",
            env={"BENCH_PREFIX": "C", "FRAMEWORK_SERVER": "hypercorn"},
            log_path=workdir / "ceiling.log",
        ),
    }

    def labels_for(workload: Workload) -> list[str]:
        return [
            label for label in services if label != "ceiling" or workload.name in CEILING_WORKLOADS
        ]

    workloads = _workloads(args.scale)
    started = time.perf_counter()
    try:
        server.start()
        for label, service in services.items():
            service.start()
            info = server.register(service.url)
            versions = ", ".join(f"{k}={v}" for k, v in info.items() if "protocol" in k)
            names = [entry.get("name") for entry in info.get("services", [])]
            print(f"registered {label} ({service.url}): {names} {versions}", flush=True)
        client_type = RawClient if args.client == "raw" else HttpxClient
        client = client_type(server.ingress_url, args.concurrency)
        try:
            print(
                f"restate-server {server.version().get('version', '?')} at {server.ingress_url}; "
                f"C={args.concurrency} concurrent HTTP/1.1 clients ({args.client}); each round "
                f"runs {', '.join(services)} in turn (the ceiling on the no-op handler only)",
                flush=True,
            )
            print("warming up ...", flush=True)
            for workload in workloads:
                warm = Workload(
                    workload.name,
                    max(args.concurrency, workload.count // 20),
                    workload.path,
                    workload.body,
                    workload.service,
                )
                for label in labels_for(workload):
                    await one_run(
                        server,
                        services[label],
                        client,
                        warm,
                        f"warm-{label}",
                        args.concurrency,
                        problems,
                    )
            print("measuring ...", flush=True)
            results: dict[str, dict[str, list[Run]]] = {}
            for workload in workloads:
                results[workload.name] = {label: [] for label in labels_for(workload)}
                for round_no in range(args.rounds):
                    for label in labels_for(workload):
                        tag = f"{label}-{round_no}"
                        result = await one_run(
                            server,
                            services[label],
                            client,
                            workload,
                            tag,
                            args.concurrency,
                            problems,
                        )
                        results[workload.name][label].append(result)
        finally:
            await client.aclose()
        report(results)
    finally:
        for service in services.values():
            service.stop()
        server.stop()
    for label, service in services.items():
        lines = log_problems(service)
        if lines:
            problems.add(
                f"{label} service log has {len(lines)} error lines, e.g.:\n    "
                + "\n    ".join(lines[:10])
            )
    print(f"\ntotal time {time.perf_counter() - started:.0f}s")
    if problems.items:
        print(f"\n{len(problems.items)} correctness problem(s):")
        for item in problems.items:
            print(f"- {item}")
        return 1
    print("no correctness problems: every answer checked, nothing left unfinished")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="runs per SDK, alternating")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the request counts (2000/500/1000)"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="HTTP/1.1 client: a lean asyncio one (default) or httpx (CPU-hungrier)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    code = asyncio.run(run(args, workdir))
    if args.keep_logs or code:
        print(f"logs: {workdir}")
    else:
        for log in workdir.iterdir():
            log.unlink()
        workdir.rmdir()
    return code


if __name__ == "__main__":
    sys.exit(main())
