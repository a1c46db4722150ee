"""``sessionshare up`` as a user runs it: a subprocess, a cluster file, HTTP and signals.

``start_cluster`` writes a ``cluster.toml`` whose every port is free (nothing collides with
other tests or with a developer's own cluster on 8080), starts the installed
``sessionshare`` command in its own process group and waits until ``/_cluster/status``
answers, which ``up`` only serves once every store and node is healthy.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ManagedProcess, ProcessPool, free_port, require_binary

#: store kind → the binary ``up`` needs for it.
STORE_BINARIES = {"memcached": "memcached", "redis": "redis-server"}


def sessionshare_command() -> list[str]:
    """The ``sessionshare`` script installed next to this Python (what a user types)."""
    script = Path(sys.executable).with_name("sessionshare")
    if script.exists():
        return [str(script)]
    found = shutil.which("sessionshare")
    return [found] if found else [sys.executable, "-m", "sessionshare"]


def cluster_file(
    path: Path,
    *,
    store: str = "replicated",
    lb: str = "builtin",
    nodes: int = 2,
    workers: int = 1,
    session: dict[str, Any] | None = None,
) -> Path:
    """A cluster file with free ports for everything ``up`` will listen on."""
    lines = [
        "[cluster]",
        'run_dir = "run"',
        "[balancer]",
        f'kind = "{lb}"',
        f"port = {free_port()}",
        "[store]",
        f'kind = "{store}"',
    ]
    if store in STORE_BINARIES:
        for i in range(2 if store == "memcached" else 1):
            lines += ["[[store.nodes]]", f'id = "{store[0]}{i + 1}"', f"port = {free_port()}"]
    for i in range(nodes):
        lines += [
            "[[nodes]]",
            f'name = "node{i + 1}"',
            f"port = {free_port()}",
            f"replication_port = {free_port()}",
            f"workers = {workers}",
        ]
    lines.append("[session]")
    for key, value in (session or {}).items():
        lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else json.dumps(str(value))


class RunningCluster:
    """A ``sessionshare up`` process and what its status JSON says about it."""

    def __init__(self, process: ManagedProcess, directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.url = process.url

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_cluster/status", timeout=timeout)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.status()["nodes"] if n["name"] == name)

    def store(self, store_id: str) -> dict[str, Any]:
        return next(s for s in self.status()["stores"] if s["id"] == store_id)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Poll the status until ``predicate`` holds; fail naming ``what`` (bounded)."""
        deadline = time.monotonic() + timeout
        document: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                document = self.status()
            except httpx.HTTPError:
                document = {}
            if document and predicate(document):
                return document
            time.sleep(0.2)
        raise AssertionError(f"not {what} after {timeout}s; last status: {document}")

    def wait_all_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_for(
            lambda d: all(n["healthy"] for n in d["nodes"] + d["stores"]),
            "all nodes and stores healthy",
            timeout,
        )

    def pids(self) -> list[int]:
        """Every pid the status names: balancer, nodes, stores."""
        document = self.status()
        items = [document["balancer"], *document["nodes"], *document["stores"]]
        return [int(item["pid"]) for item in items if item.get("pid")]

    def ports(self) -> list[int]:
        """Every port of the cluster file (balancer, nodes, replication, stores)."""
        data = tomllib.loads((self.directory / "cluster.toml").read_text())
        ports = [data["balancer"]["port"]]
        for node in data["nodes"]:
            ports += [node["port"]]
            if data["store"]["kind"] in ("replicated", "backup"):
                ports.append(node["replication_port"])
        ports += [node["port"] for node in data["store"].get("nodes", [])]
        return ports


StartCluster = Callable[..., RunningCluster]


@pytest.fixture
def start_cluster(server_pool: ProcessPool, tmp_path: Path) -> StartCluster:
    """Start ``sessionshare up --config <free-port cluster file> [extra args]``."""

    def start(
        *,
        store: str = "replicated",
        lb: str = "builtin",
        nodes: int = 2,
        workers: int = 1,
        session: dict[str, Any] | None = None,
        args: Sequence[str] = (),
        timeout: float = 90.0,
    ) -> RunningCluster:
        if store in STORE_BINARIES:
            require_binary(STORE_BINARIES[store])
        if lb == "nginx":
            require_binary("nginx", "nginx-light")
        directory = tmp_path / f"cluster{sum(1 for _ in server_pool) + 1}"
        directory.mkdir()
        config = cluster_file(
            directory / "cluster.toml",
            store=store,
            lb=lb,
            nodes=nodes,
            workers=workers,
            session=session,
        )
        port = int(config.read_text().split("port = ", 1)[1].split("\n", 1)[0])
        process = ManagedProcess(
            [*sessionshare_command(), "up", "--config", str(config), *args],
            port,
            name="up",
            log_dir=server_pool.log_dir,
            cwd=directory,
            ready_path="/_cluster/status",
            ready_timeout=timeout,
        )
        # Stopping ``up`` must be enough: it stops its own children (tested on its own).
        process.stop_timeout = 30.0
        server_pool.add(process).start().wait_ready()
        return RunningCluster(process, directory)

    return start
