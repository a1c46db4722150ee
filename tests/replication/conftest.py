"""Fixtures for the peer stores: real ``sessionshare node`` processes joined by replication.

Each member's replication port is chosen up front (static membership, as in the cluster
file), so a node can be started later, killed and restarted on the same ports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import ManagedProcess, ProcessPool, free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-cluster-secret"


@dataclass
class PeerCluster:
    """App nodes ``node1..nodeN`` sharing sessions through a peer store."""

    pool: ProcessPool
    store: str
    members: str
    options: Sequence[str]
    nodes: dict[str, ManagedProcess] = field(default_factory=dict)

    def process(self, name: str) -> ManagedProcess:
        """The (unstarted) node process ``name``; the same object on every call."""
        if name not in self.nodes:
            argv = [
                sys.executable, "-c", "from sessionshare.cli.main import main; main()",
                "node", "--name", name, "--port", "{port}", "--store", self.store,
                "--members", self.members, *self.options,
            ]  # fmt: skip
            env = {**os.environ, "SESSIONSHARE_SECRET": SECRET}
            process = ManagedProcess(
                argv, name=name, log_dir=self.pool.log_dir, cwd=REPO, env=env,
                ready_path="/healthz", ready_timeout=20,
            )  # fmt: skip
            self.nodes[name] = self.pool.add(process)
        return self.nodes[name]

    def start(self, *names: str) -> list[ManagedProcess]:
        """Start nodes in parallel (imports take ~0.5 s each), then wait for each: ready
        means ``/healthz`` is 200, i.e. the node finished its state transfer."""
        processes = [self.process(name) for name in names]
        for process in processes:
            process.start()
        return [process.wait_ready() for process in processes]

    def log(self, name: str) -> str:
        return self.nodes[name].log_path.read_text(errors="replace")


ClusterFactory = Callable[..., PeerCluster]


@pytest.fixture
def peer_cluster(server_pool: ProcessPool) -> ClusterFactory:
    """``peer_cluster("replicated", 3, start=2, locking="all")``: members node1..node3 are
    configured, the first ``start`` of them (all by default) are started and ready."""

    def make(
        store: str, size: int, *, start: int | None = None, options: Sequence[str] = ()
    ) -> PeerCluster:
        names = [f"node{i}" for i in range(1, size + 1)]
        members = " ".join(f"{name}=127.0.0.1:{free_port()}" for name in names)
        cluster = PeerCluster(server_pool, store, members, list(options))
        cluster.start(*names[: size if start is None else start])
        return cluster

    return make
