"""The cost of durability per agent turn: the same pydantic-ai agent (a scripted model, one
tool call; bench/agent_handlers.py) run without Restate, through restate-server on ours
(framework.ext.pydantic) and on the official SDK (restate.ext.pydantic), side by side.

Without Restate the agent runs in this process (its CPU per turn is what pydantic-ai itself
costs); through the server, each deployment serves it in its own process and ``C``
concurrent clients call it for a fixed number of turns per round, the deployments in turn.
Reported: turns/s, p50, CPU ms per turn of the service and of the server, and the ratios.

Run: ``.venv/bin/python bench/agents.py`` (about 1-2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    BenchService,
    CpuMeter,
    Ingress,
    Problems,
    official_python,
    percentile,
    ratio,
    table,
)
from framework._dev.restate_server import RestateServer

PREFIXES = {"ours": "", "official": "O"}
ANSWER = json.dumps("the answer is 42").encode()


async def without_restate(turns: int) -> float:
    """CPU seconds per turn of the bare agent, in this process."""
    os.environ["BENCH_SDK"] = "framework"
    from bench import agent_handlers

    async def run_all() -> None:
        for _ in range(turns):
            result = await agent_handlers.agent.run("question")
            assert result.output == "the answer is 42"

    await run_all()  # warm up
    started = time.process_time()
    await run_all()
    return (time.process_time() - started) / turns


async def drive(ingress: Ingress, path: str, turns: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    left = turns

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            sent = time.perf_counter()
            status, body = await ingress.request("POST", path, b'"question"')
            assert status == 200 and body == ANSWER, (status, body[:200])
            latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def run(args: argparse.Namespace, workdir: Path) -> int:
    problems = Problems()
    server = RestateServer(log_path=workdir / "restate-server.log")
    services = {
        "ours": BenchService(
            "ours",
            "bench.agent_handlers:app",
            env={"BENCH_SDK": "framework", "BENCH_PREFIX": PREFIXES["ours"]},
            log_path=workdir / "ours.log",
        ),
        "official": BenchService(
            "official",
            "bench.agent_handlers:app",
            python=official_python(),
            env={"BENCH_SDK": "official", "BENCH_PREFIX": PREFIXES["official"]},
            log_path=workdir / "official.log",
        ),
    }
    bare = await without_restate(args.turns)
    results: dict[str, dict[str, float]] = {}
    try:
        server.start()
        for service in services.values():
            service.start()
            server.register(service.url)
        ingress = Ingress(server.ingress_url)
        totals = {label: {"turns": 0.0, "wall": 0.0, "svc": 0.0, "srv": 0.0} for label in services}
        latencies: dict[str, list[float]] = {label: [] for label in services}
        for round_no in range(args.rounds + 1):  # round 0 warms up
            for label, service in services.items():
                path = f"/{PREFIXES[label]}AgentBench/turn"
                assert service.pid is not None and server.pid is not None
                meter = CpuMeter({"svc": service.pid, "srv": server.pid})
                meter.start()
                started = time.perf_counter()
                got = await drive(ingress, path, args.turns, args.concurrency)
                wall = time.perf_counter() - started
                meter.stop()
                if round_no == 0:
                    continue
                totals[label]["turns"] += args.turns
                totals[label]["wall"] += wall
                totals[label]["svc"] += meter.used["svc"]
                totals[label]["srv"] += meter.used["srv"]
                latencies[label] += got
        await ingress.aclose()
        for label, total in totals.items():
            n = total["turns"]
            results[label] = {
                "per_s": n / total["wall"],
                "p50": percentile(latencies[label], 0.5) * 1e3,
                "svc": total["svc"] / n * 1e3,
                "srv": total["srv"] / n * 1e3,
            }
    finally:
        for service in services.values():
            service.stop()
        server.stop()
    rows = [["no Restate (in process)", "-", "-", f"{bare * 1e3:.2f}", "-"]]
    rows += [
        [label, f"{r['per_s']:.0f}", f"{r['p50']:.1f}", f"{r['svc']:.2f}", f"{r['srv']:.2f}"]
        for label, r in results.items()
    ]
    print(table(["agent turn", "turns/s", "p50 ms", "svc CPU ms/turn", "server CPU ms/turn"], rows))
    ours, official = results["ours"], results["official"]
    print(
        f"\nours / official: turns/s {ratio(ours['per_s'], official['per_s'])}, "
        f"svc CPU/turn {ratio(ours['svc'], official['svc'])}; "
        f"durability costs ours {ours['svc'] - bare * 1e3:+.2f} ms of service CPU per turn "
        f"over the bare agent, official {official['svc'] - bare * 1e3:+.2f} ms"
    )
    return 1 if problems.items else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="turns per deployment and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", "-c", type=int, default=16)
    args = parser.parse_args()
    return asyncio.run(run(args, Path(mkdtemp(prefix="bench-agents-"))))


if __name__ == "__main__":
    sys.exit(main())
