"""A Restate cluster on one machine, for tests/test_cluster.py: config files for N nodes on
loopback, a runner for one node, and who leads each partition (asked with ``restatectl``).

Built on the framework's dev tooling (``framework._dev``): the same npm install of the
binaries, the same child-process handling as ``RestateServer``.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import tomli_w

from framework._dev.admin import get_ok
from framework._dev.install import RESTATE_SERVER_VERSION, ensure_restate_server, npm_binary
from framework._dev.processes import (
    LOOPBACK,
    ChildProcess,
    child_env,
    free_port,
    last_lines,
    port_is_free,
)
from framework._dev.wait import WaitTimeout, wait_until
from framework.exceptions import RestateServerError

# What makes the nodes one replicated cluster (keys of restate-server 1.7's config file):
# metadata replicated over every node's metadata server, the log on the replicated loglet with
# two copies of every record (and partitions with a leader and one follower), few partitions
# and little RocksDB memory, so that three nodes and a service fit on a small machine.
CLUSTER_SETTINGS: dict[str, Any] = {
    "default-num-partitions": 4,
    "default-replication": 2,
    "rocksdb-total-memory-size": "128 MiB",
    "bifrost": {"default-provider": "replicated"},
    "metadata-client": {"type": "replicated"},
}

RESTATECTL_VERSION = RESTATE_SERVER_VERSION


def ensure_restatectl(version: str = RESTATECTL_VERSION) -> Path:
    """The path of a ``restatectl`` binary (the cluster admin tool), installed with npm once.

    ``$RESTATECTL_BIN`` wins when set; otherwise ``@restatedev/restatectl`` is installed into
    the framework's cache dir, as ``ensure_restate_server`` does for the server.
    """
    return npm_binary("restatectl", "@restatedev/restatectl", version, "RESTATECTL_BIN")


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        current = result.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            result[key] = _merged(current, value)
        else:
            result[key] = value
    return result


def write_cluster_configs(
    root: Path,
    nodes: int = 3,
    *,
    cluster_name: str = "framework-cluster",
    settings: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write one restate-server config file per node of a cluster on 127.0.0.1; their paths.

    Node ``i`` (from 1) gets ``root/node-i/restate.toml`` with its data in ``root/node-i/data``,
    the node name ``node-i``, free ports for its fabric (node-to-node), admin and ingress
    addresses, and every node's fabric address as the metadata servers to reach. Only node 1
    provisions the cluster (``auto-provision``). ``settings`` (default ``CLUSTER_SETTINGS``) are
    merged in last; a key of a table (``{"bifrost": {...}}``) is merged into that table.
    """
    if nodes < 1:
        raise ValueError(f"a cluster needs at least one node, not {nodes}")
    root = Path(root).resolve()
    ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
    fabric = [f"http://{LOOPBACK}:{node}/" for node, _, _ in ports]
    paths = []
    for index, (node_port, admin_port, ingress_port) in enumerate(ports, start=1):
        directory = root / f"node-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "node-name": f"node-{index}",
            "cluster-name": cluster_name,
            "base-dir": str(directory / "data"),
            "auto-provision": index == 1,
            "listen-mode": "tcp",  # no unix sockets under base-dir (their paths are limited)
            "disable-telemetry": True,
            "log-disable-ansi-codes": True,
            "bind-address": f"{LOOPBACK}:{node_port}",
            "advertised-address": fabric[index - 1],
            "admin": {
                "bind-address": f"{LOOPBACK}:{admin_port}",
                "advertised-address": f"http://{LOOPBACK}:{admin_port}/",
            },
            "ingress": {
                "bind-address": f"{LOOPBACK}:{ingress_port}",
                "advertised-address": f"http://{LOOPBACK}:{ingress_port}/",
            },
            "metadata-client": {"type": "replicated", "addresses": fabric},
        }
        config = _merged(config, CLUSTER_SETTINGS if settings is None else settings)
        path = directory / "restate.toml"
        path.write_text(tomli_w.dumps(config))
        paths.append(path)
    return paths


def _address_port(address: str, what: str, config_file: Path) -> int:
    port = urllib.parse.urlsplit(address if "//" in address else f"//{address}").port
    if port is None:
        raise RestateServerError(f"{config_file}: {what} {address!r} has no port")
    return port


class RestateClusterNode(ChildProcess):
    """One restate-server node started from a TOML config file (``--config-file``).

    The config says everything: node name, cluster, base dir, the fabric, admin and ingress
    addresses (``write_cluster_configs`` writes a cluster's worth). ``start`` only launches the
    process, since a node that joins a cluster is not healthy before the others are up: start
    every node, then ``wait_healthy`` on each and ``wait_for_partition_leaders``. The log goes
    to ``log_path``, else to ``restate-server.log`` beside the config file.
    """

    kind = "restate-node"

    def __init__(
        self,
        config_file: Path,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        version: str = RESTATE_SERVER_VERSION,
    ) -> None:
        self.config_file = Path(config_file).resolve()
        with self.config_file.open("rb") as handle:
            self.config: dict[str, Any] = tomllib.load(handle)
        super().__init__(log_path or self.config_file.parent / "restate-server.log")
        self._own_log = False
        self._extra_env = dict(env or {})
        self._version = version
        self.name: str = self.config.get("node-name", self.config_file.parent.name)
        base_dir = self.config.get("base-dir")
        self.base_dir = Path(base_dir) if base_dir else self.config_file.parent / "data"

        def port(section: Mapping[str, Any], default: int, what: str) -> int:
            address = section.get("bind-address")
            return default if address is None else _address_port(address, what, self.config_file)

        self.node_port = port(self.config, 5122, "bind-address")
        self.admin_port = port(self.config.get("admin", {}), 9070, "[admin] bind-address")
        self.ingress_port = port(self.config.get("ingress", {}), 8080, "[ingress] bind-address")

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:PORT`` of this node's admin API."""
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def ingress_url(self) -> str:
        """``http://127.0.0.1:PORT`` of this node's ingress."""
        return f"http://{LOOPBACK}:{self.ingress_port}"

    @property
    def fabric_url(self) -> str:
        """The node-to-node address other nodes (and ``restatectl``) reach this node at."""
        advertised = self.config.get("advertised-address")
        return str(advertised or f"http://{LOOPBACK}:{self.node_port}/")

    def start(self, timeout: float = 0.0) -> None:
        """Launch the node; with ``timeout`` > 0, also ``wait_healthy(timeout)``."""
        if self.running():
            raise RestateServerError(f"{self.name} is already running (pid {self.pid})")
        binary = ensure_restate_server(self._version)
        for what, number in (
            ("node", self.node_port),
            ("admin", self.admin_port),
            ("ingress", self.ingress_port),
        ):
            if not port_is_free(number):
                raise RestateServerError(
                    f"{self.name}: the {what} port {number} is already in use ({self.config_file})"
                )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        env = child_env()
        env.update({"RESTATE_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"})
        env.update(self._extra_env)
        command = [str(binary), "--no-logo", "--config-file", str(self.config_file)]
        self._spawn(command, env, cwd=self.base_dir)
        if timeout > 0:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until the admin API and the ingress answer their health checks."""
        urls = [f"{self.admin_url}/health", f"{self.ingress_url}/restate/health"]

        def healthy() -> bool:
            while urls:  # each one that answered is not asked again
                get_ok(urls[0])
                urls.pop(0)
            return True

        try:
            code = self._wait_while_running(
                healthy,
                f"{self.name}'s admin API and ingress",
                timeout=timeout,
                retry_on=(RestateServerError, OSError),
            )
        except WaitTimeout as error:
            raise RestateServerError(
                f"{self.name} was not healthy: {error}; its log ({self._log_path}) ends with:\n"
                f"{self.log_tail()}"
            ) from None
        if code is not None:
            raise RestateServerError(
                f"{self.name} exited with code {code}; its log ({self._log_path}) ends "
                f"with:\n{self.log_tail()}"
            )

    def __enter__(self) -> Self:
        self.start(60.0)  # healthy too, not only launched
        return self

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running() else "stopped"
        return (
            f"<RestateClusterNode {self.name} {state} fabric={self.node_port} "
            f"admin={self.admin_port} ingress={self.ingress_port}>"
        )


_LEADERS_SQL = (
    "SELECT p.partition_id AS partition_id, n.name AS node FROM partition_state p "
    "JOIN nodes n ON p.plain_node_id = n.plain_node_id "
    "WHERE p.effective_mode = 'Leader' AND n.state = 'alive'"
)


def partition_leaders(nodes: Iterable[RestateClusterNode], timeout: float = 10.0) -> dict[int, str]:
    """Which node leads each partition now, asked of the given (running) nodes by restatectl.

    ``{partition id: node name}``; a partition without a leader is missing. Raises
    ``RestateServerError`` when restatectl fails (e.g. none of the nodes answers).
    """
    addresses = ",".join(node.fabric_url for node in nodes if node.running())
    if not addresses:
        raise RestateServerError("no running node to ask for the partition leaders")
    command = [str(ensure_restatectl()), "--address", addresses, "sql", "--json", _LEADERS_SQL]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=child_env(), timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        raise RestateServerError(f"restatectl got no answer within {timeout:.0f}s") from error
    if result.returncode != 0:
        raise RestateServerError(f"restatectl sql failed: {last_lines(result.stderr, 5)}")
    rows = json.loads(result.stdout or "[]")
    return {int(row["partition_id"]): str(row["node"]) for row in rows}


def wait_for_partition_leaders(
    nodes: Iterable[RestateClusterNode],
    partitions: int,
    *,
    timeout: float = 60.0,
    exclude: Iterable[str] = (),
) -> dict[int, str]:
    """Wait until each of ``partitions`` partitions has a leader, none of them a node named in
    ``exclude`` (e.g. one just killed); returns ``{partition id: leader node name}``."""
    running = list(nodes)
    excluded = set(exclude)

    def led() -> dict[int, str]:
        leaders = partition_leaders(running, timeout=max(1.0, min(10.0, timeout)))
        good = {p: node for p, node in leaders.items() if node not in excluded}
        if len(good) >= partitions:
            return good
        missing = sorted(set(range(partitions)) - set(good))
        raise RestateServerError(f"partitions {missing} have no leader (leaders: {leaders})")

    return wait_until(
        led,
        f"a leader for each of the cluster's {partitions} partitions",
        timeout=timeout,
        interval=0.2,
        retry_on=(RestateServerError,),
        error=RestateServerError,
    )
