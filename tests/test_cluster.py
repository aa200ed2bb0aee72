"""Beyond one machine: the example services behind a three-node Restate cluster, one node
SIGKILLed under load; and compose.cluster.yaml, checked against the same settings.

The cluster runs on loopback (``tests/cluster.py``): three restate-server nodes, each from
its own TOML config file (``write_cluster_configs``) with its own base dir, node name and free
fabric/admin/ingress ports; replicated metadata on all three, the replicated loglet and
``default-replication = 2``, ``CLUSTER_SETTINGS`` for the rest; node 1 provisions it. Ready
means every partition has a leader (``restatectl``). The services (``services.app:app``) are
registered once, through node 1's admin API.

Then 300 invocations with idempotency keys, spread round-robin over the three ingresses, at
most ``CONCURRENCY`` at a time: 200 ``Counter.add`` in 20 chains (key ``k`` gets deltas 1..10
in order, so the j-th answer must be 1+..+j) and 100 ``Greeter.greet``. Halfway, the node that
led the most partitions when the load began is SIGKILLed: its ingress, its partition
leaderships, its log and metadata replicas go at once. (Node 1 when tied: it provisioned the
cluster and took the registration, and neither makes it special once done.) A call whose
ingress is gone, whose connection broke, or that got a 5xx, is sent again through the next
ingress with the same idempotency key. Every answer must be exactly right, and exactly once:
the counters end at 55, re-sending each greet (whose answer holds a random uuid) returns the
very same answer, and the server holds exactly 300 invocations with these keys.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
import tomllib
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from framework.__main__ import _parser
from framework._dev.admin import AdminClient, register_deployment
from framework._dev.install import RESTATE_SERVER_VERSION, ensure_restate_server
from framework._dev.service_process import ServiceProcess
from framework.client import HttpError, RestateClient, create_client
from tests.cluster import (
    CLUSTER_SETTINGS,
    RestateClusterNode,
    partition_leaders,
    wait_for_partition_leaders,
    write_cluster_configs,
)
from tests.test_container import _bind_port, _exec_form, parse_dockerfile

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.cluster.yaml"
DOCKERFILE = ROOT / "Dockerfile"

NODES = 3
PARTITIONS = CLUSTER_SETTINGS["default-num-partitions"]
COUNTER_KEYS = 20
ADDS_PER_KEY = 10  # deltas 1..10: the j-th answer is j*(j+1)/2, the last 55
GREETS = 100
TOTAL = COUNTER_KEYS * ADDS_PER_KEY + GREETS
CONCURRENCY = 24
KILL_AFTER = TOTAL // 2  # completed calls
ATTEMPT_TIMEOUT = 15.0  # one HTTP attempt; then the call is sent again (same key)
CALL_DEADLINE = 60.0  # one call, all attempts
LOAD_DEADLINE = 90.0  # the whole load
READY_TIMEOUT = 60.0


# -- the load -------------------------------------------------------------------------------


@dataclass
class Call:
    kind: str  # "add" or "greet"
    idempotency_key: str
    key: str | None  # the counter's key
    arg: Any
    expected: int | str  # the exact sum; for a greet the prefix
    result: Any = None
    ingresses: list[int] = field(default_factory=list)  # node index of each attempt
    errors: list[str] = field(default_factory=list)  # why each failed attempt failed
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Load:
    clients: list[RestateClient]
    run_id: str
    completed: int = 0
    in_flight: int = 0
    halfway: asyncio.Event = field(default_factory=asyncio.Event)
    round_robin: itertools.count[int] = field(default_factory=itertools.count)

    async def send(self, call: Call) -> None:
        """One call, through ingress i, i+1, ... (round-robin) until it has an answer."""
        first = next(self.round_robin)
        call.started = time.monotonic()
        deadline = call.started + CALL_DEADLINE
        self.in_flight += 1
        for attempt in itertools.count():
            index = (first + attempt) % len(self.clients)
            call.ingresses.append(index)
            client = self.clients[index]
            try:
                if call.kind == "add":
                    assert call.key is not None
                    call.result = await client.object_call(
                        "Counter/add", call.key, call.arg, idempotency_key=call.idempotency_key
                    )
                else:
                    call.result = await client.service_call(
                        "Greeter/greet", call.arg, idempotency_key=call.idempotency_key
                    )
                break
            except httpx.TransportError as error:  # refused, broken, timed out
                call.errors.append(type(error).__name__)
            except HttpError as error:
                if error.status_code < 500:  # a wrong request or a handler's terminal error
                    raise AssertionError(f"{call}: {error}") from error
                call.errors.append(f"HTTP {error.status_code}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer within {CALL_DEADLINE:.0f}s: {call}")
            await asyncio.sleep(min(0.05 * attempt, 0.5))
        call.finished = time.monotonic()
        self.in_flight -= 1
        self.completed += 1
        if self.completed >= KILL_AFTER:
            self.halfway.set()


def make_calls(run_id: str) -> tuple[list[list[Call]], list[Call]]:
    chains = []
    for k in range(COUNTER_KEYS):
        key = f"{run_id}-counter-{k}"
        chains.append(
            [
                Call("add", f"{run_id}-add-{k}-{j}", key, j, j * (j + 1) // 2)
                for j in range(1, ADDS_PER_KEY + 1)
            ]
        )
    greets = [
        Call("greet", f"{run_id}-greet-{i}", None, f"guest-{i}", f"Hello, guest-{i}!")
        for i in range(GREETS)
    ]
    return chains, greets


async def run_load(load: Load, chains: list[list[Call]], greets: list[Call]) -> None:
    """``CONCURRENCY`` workers; a counter chain holds one worker for its 10 calls in order."""
    jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
    per_chain = len(greets) // len(chains)

    def chain_job(chain: list[Call]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            for call in chain:
                await load.send(call)

        return job

    def greet_job(call: Call) -> Callable[[], Awaitable[None]]:
        return lambda: load.send(call)

    for index, chain in enumerate(chains):  # interleaved: both kinds run at the halfway mark
        jobs.put_nowait(chain_job(chain))
        for call in greets[index * per_chain : (index + 1) * per_chain]:
            jobs.put_nowait(greet_job(call))
    for call in greets[len(chains) * per_chain :]:
        jobs.put_nowait(greet_job(call))

    async def worker() -> None:
        while not jobs.empty():
            job = jobs.get_nowait()
            await job()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


# -- helpers --------------------------------------------------------------------------------


def _logs(nodes: list[RestateClusterNode], service: ServiceProcess | None = None) -> str:
    parts = [f"--- {node.name} ({node.log_path}):\n{node.log_tail(30)}" for node in nodes]
    if service is not None:
        parts.append(f"--- service ({service.log_path}):\n{service.log_tail(30)}")
    return "\n".join(parts)


async def _wait_until_served(clients: list[RestateClient], timeout: float = 30.0) -> None:
    """Each ingress knows the registered services (the schema reaches nodes as metadata)."""
    deadline = time.monotonic() + timeout
    for index, client in enumerate(clients):
        while True:
            try:
                answer: str = await client.service_call("Greeter/greet", f"warm-up-{index}")
                assert answer.startswith(f"Hello, warm-up-{index}!"), answer
                break
            except (httpx.TransportError, HttpError) as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"ingress {index} did not serve: {error!r}") from error
                await asyncio.sleep(0.2)


# -- the test -------------------------------------------------------------------------------


def test_cluster_survives_losing_a_node_under_load(tmp_path: Path) -> None:
    assert CLUSTER_SETTINGS["default-replication"] == 2
    assert CLUSTER_SETTINGS["bifrost"]["default-provider"] == "replicated"
    assert CLUSTER_SETTINGS["metadata-client"]["type"] == "replicated"
    configs = write_cluster_configs(
        tmp_path / "cluster", NODES, cluster_name=f"test-{os.getpid()}", settings=CLUSTER_SETTINGS
    )
    nodes = [RestateClusterNode(config) for config in configs]
    service: ServiceProcess | None = None
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        for node in nodes:
            node.start()
        pids = [node.pid for node in nodes]
        for node in nodes:
            node.wait_healthy(READY_TIMEOUT)
        timings["nodes healthy"] = time.monotonic() - started
        leaders = wait_for_partition_leaders(nodes, PARTITIONS, timeout=READY_TIMEOUT)
        timings["every partition led"] = time.monotonic() - started
        assert set(leaders) == set(range(PARTITIONS))

        service = ServiceProcess("services.app:app", cwd=ROOT, log_path=tmp_path / "service.log")
        service.start()
        registered = register_deployment(nodes[0].admin_url, service.url, force=True, wait=30.0)
        assert {"Greeter", "Counter"} <= {s["name"] for s in registered["services"]}
        result = asyncio.run(_drive(nodes, timings))
        timings["total"] = time.monotonic() - started
    except BaseException as error:
        error.add_note(_logs(nodes, service))
        raise
    finally:
        if service is not None:
            service.stop()
        for node in nodes:
            node.stop()  # by PID: SIGTERM, SIGKILL after 10 s; the killed one is reaped already
    for pid in pids:  # every node's process is gone
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    print(
        "cluster: "
        + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in timings.items())
        + f"; {result}"
    )


async def _drive(nodes: list[RestateClusterNode], timings: dict[str, float]) -> str:
    run_id = f"r{time.time_ns()}"
    async with (
        create_client(nodes[0].ingress_url, timeout=ATTEMPT_TIMEOUT) as c1,
        create_client(nodes[1].ingress_url, timeout=ATTEMPT_TIMEOUT) as c2,
        create_client(nodes[2].ingress_url, timeout=ATTEMPT_TIMEOUT) as c3,
    ):
        clients = [c1, c2, c3]
        await _wait_until_served(clients)
        load = Load(clients, run_id)
        chains, greets = make_calls(run_id)
        calls = [call for chain in chains for call in chain] + greets

        # The victim: the node that leads the most partitions (node 1 when tied), so that the
        # kill moves as many partition leaderships as it can, besides an ingress and log and
        # metadata replicas. Leadership stays put while no node fails: chosen before the load.
        leaders = await asyncio.to_thread(partition_leaders, nodes)
        led = Tally(leaders.values())
        victim = min(nodes, key=lambda node: (-led[node.name], node.name))
        survivors = [node for node in nodes if node is not victim]
        killed: dict[str, Any] = {"leaders": leaders}

        async def kill_halfway() -> None:
            await load.halfway.wait()
            killed.update(at=time.monotonic(), completed=load.completed, in_flight=load.in_flight)
            victim.kill()  # SIGKILL by PID (and reap it: a few ms)
            await asyncio.to_thread(
                wait_for_partition_leaders,
                survivors,
                PARTITIONS,
                timeout=30.0,
                exclude=[victim.name],
            )
            killed["failover"] = time.monotonic() - killed["at"]

        load_started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(run_load(load, chains, greets), kill_halfway()), LOAD_DEADLINE
        )
        timings["load"] = time.monotonic() - load_started
        timings["failover (partition leaders)"] = killed["failover"]

        # Every answer exactly right.
        assert load.completed == TOTAL
        wrong = [
            call
            for call in calls
            if (
                call.result != call.expected
                if call.kind == "add"
                else not str(call.result).startswith(str(call.expected))
            )
        ]
        assert not wrong, wrong[:5]

        # Exactly once: every greet again (same key, through a survivor) answers the very same
        # (its answer holds a uuid and a random number); every counter ends at 1+...+10.
        survivor_clients = [clients[nodes.index(node)] for node in survivors]
        for i, call in enumerate(greets):
            again: str = await survivor_clients[i % 2].service_call(
                "Greeter/greet", call.arg, idempotency_key=call.idempotency_key
            )
            assert again == call.result, (call, again)
        for k, chain in enumerate(chains):
            key = chain[0].key
            assert key is not None  # every counter call has its key
            total: int = await survivor_clients[k % 2].object_call("Counter/get", key, None)
            assert total == ADDS_PER_KEY * (ADDS_PER_KEY + 1) // 2, (chain[0].key, total)
        rows = AdminClient(survivors[0].admin_url).query(
            "SELECT target_service_name AS service, count(*) AS n FROM sys_invocation "
            f"WHERE idempotency_key LIKE '{run_id}-%' AND status = 'completed' "
            "GROUP BY target_service_name",
        )
        assert {row["service"]: row["n"] for row in rows} == {
            "Counter": COUNTER_KEYS * ADDS_PER_KEY,
            "Greeter": GREETS,
        }, rows
        # The registration is cluster metadata: every survivor lists the one deployment.
        for node in survivors:
            deployments = httpx.get(f"{node.admin_url}/deployments", trust_env=False).json()
            assert len(deployments["deployments"]) == 1, deployments

    retried = [call for call in calls if call.errors]
    in_flight_at_kill = [call for call in calls if call.started < killed["at"] < call.finished]
    assert in_flight_at_kill and retried  # the failover path was taken
    causes = Tally(error for call in calls for error in call.errors)
    slowest = max(call.finished - call.started for call in calls)
    settled = max(call.finished for call in in_flight_at_kill) - killed["at"]
    return (
        f"{TOTAL} calls ({COUNTER_KEYS * ADDS_PER_KEY} Counter.add, {GREETS} Greeter.greet), "
        f"all right; killed {victim.name} (leaders {killed['leaders']}) after "
        f"{killed['completed']} answers with {len(in_flight_at_kill)} in flight, the last of "
        f"them answered {settled:.1f}s after the kill; "
        f"{len(retried)} calls retried ({dict(causes)}); slowest call {slowest:.1f}s; "
        f"attempts per ingress {dict(Tally(i for call in calls for i in call.ingresses))}"
    )


# -- compose.cluster.yaml -------------------------------------------------------------------


def _env_key(name: str) -> str:
    """``RESTATE_METADATA_CLIENT__TYPE`` -> ``metadata-client.type`` (the server's mapping)."""
    assert name.startswith("RESTATE_"), name
    return ".".join(part.lower().replace("_", "-") for part in name[8:].split("__"))


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _dump_config(env: dict[str, str], config_file: Path | None = None) -> dict[str, Any]:
    """The configuration restate-server itself reads from ``env`` (and ``config_file``)."""
    command = [str(ensure_restate_server()), "--dump-config"]
    if config_file is not None:
        command += ["--config-file", str(config_file)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
    result = subprocess.run(
        command, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return tomllib.loads(result.stdout)


# Keys only the loopback cluster needs (one machine: ports apart, no unix sockets, plain logs);
# in compose each node is a host of its own and the defaults do.
LOOPBACK_ONLY = {
    "bind-address",
    "admin.bind-address",
    "admin.advertised-address",
    "ingress.bind-address",
    "ingress.advertised-address",
    "listen-mode",
    "log-disable-ansi-codes",
}


def test_compose_cluster_file_runs_the_tested_cluster(tmp_path: Path) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())

    services = compose["services"]
    node_names = ["restate-1", "restate-2", "restate-3"]
    assert set(services) == {*node_names, "service", "register"}
    assert set(compose["volumes"]) == {f"{name}-data" for name in node_names}

    # The keys the test's node configs set, less the loopback-only ones: compose sets exactly
    # those (as RESTATE_... variables), and the cluster-wide ones to the very same values.
    test_file = write_cluster_configs(tmp_path, NODES, settings=CLUSTER_SETTINGS)[0]
    tested_keys = set(_flatten(tomllib.loads(test_file.read_text()))) - LOOPBACK_ONLY
    tested = _flatten(_dump_config({}, test_file))  # as the server reads the test's file
    host_ports: list[str] = []
    fabric = [f"http://{name}:5122/" for name in node_names]
    for index, name in enumerate(node_names, start=1):
        node = services[name]
        image, _, tag = node["image"].rpartition(":")
        assert image in ("docker.restate.dev/restatedev/restate", "restatedev/restate")
        assert tag == RESTATE_SERVER_VERSION
        env = node["environment"]
        assert all(isinstance(value, str) for value in env.values()), env
        keys = {_env_key(var) for var in env if var.startswith("RESTATE_")}
        assert keys == tested_keys, keys ^ tested_keys
        assert node["volumes"] == [f"{name}-data:{env['RESTATE_BASE_DIR']}"]
        host_ports += [mapping.split(":")[0] for mapping in node["ports"]]
        assert {mapping.split(":")[-1] for mapping in node["ports"]} == {"8080", "9070"}

        # What the server reads from that environment (the same binary as the image).
        read = _flatten(_dump_config(env))
        for key in _flatten(CLUSTER_SETTINGS):
            assert read[key] == tested[key], (name, key, read[key], tested[key])
        assert read["node-name"] == name
        assert read["cluster-name"] == services["restate-1"]["environment"]["RESTATE_CLUSTER_NAME"]
        assert read["auto-provision"] is (index == 1)  # one node provisions
        assert read["advertised-address"] == fabric[index - 1]
        assert read["metadata-client.addresses"] == fabric
        assert read["disable-telemetry"] is True
    assert len(host_ports) == len(set(host_ports)), host_ports

    _, final = parse_dockerfile(DOCKERFILE.read_text())
    cmd = _exec_form(final.one("CMD"))
    port = _bind_port(cmd)
    service = services["service"]
    assert service["build"] == "."
    assert service["command"] == cmd
    assert service["expose"] == [str(port)]

    register = services["register"]
    assert register["build"] == "."
    assert register["restart"] == "no"
    assert set(register["depends_on"]) == {*node_names, "service"}
    command = register["command"]
    assert command[:3] == ["python", "-m", "framework"]
    args = _parser().parse_args(command[3:])
    assert args.command == "register" and args.wait > 0 and args.force
    assert args.uri == f"http://service:{port}"
    assert args.admin_url == "http://restate-1:9070"
