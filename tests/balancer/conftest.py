"""Fixtures for balancer tests: real upstream nodes and a real balancer, embedded or nginx.

The ``lb`` fixture runs each behavioural test twice, once per ``--lb`` (SPEC §5: the same
tests must pass with nginx). Nodes that no test kills or reconfigures for good are shared
per module (``upstreams``) to keep the suite fast; tests that kill nodes start their own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers import ManagedProcess, ProcessPool, free_port, require_binary

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def upstream_process(name: str, log_dir: Path, port: int | None = None) -> ManagedProcess:
    """The test upstream app (``tests/balancer/upstream_app.py``) as a real process."""
    return ManagedProcess(
        [sys.executable, "-m", "tests.balancer.upstream_app", "--name", name, "--port", "{port}"],
        port,
        name=name,
        log_dir=log_dir,
        cwd=REPO,
        ready_path="/healthz",
    )


def demo_node_process(name: str, log_dir: Path) -> ManagedProcess:
    """The real demo node (``sessionshare node``) with the in-memory store."""
    return ManagedProcess(
        [sys.executable, "-c", "from sessionshare.cli.main import main; main()",
         "node", "--name", name, "--port", "{port}", "--store", "memory"],
        name=name, log_dir=log_dir, cwd=REPO, ready_path="/healthz",
    )  # fmt: skip


class ClosedNode:
    """Stands in for a node process in ``balancer_factory``: nothing listens on its port."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"http://{LOOPBACK}:{free_port()}"


def start_all(pool: ProcessPool, processes: Sequence[ManagedProcess]) -> list[ManagedProcess]:
    """Start in parallel (each takes ~0.5 s to import), then wait for every one."""
    for process in processes:
        pool.add(process).start()
    return [process.wait_ready() for process in processes]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ManagedProcess]]:
    """Three shared upstream nodes n1, n2, n3 (tests must undo any /delay or /health)."""
    pool = ProcessPool(tmp_path_factory.mktemp("upstreams"))
    try:
        nodes = start_all(pool, [upstream_process(n, pool.log_dir) for n in ("n1", "n2", "n3")])
        yield {node.name: node for node in nodes}
    finally:
        pool.close()


@pytest.fixture(params=["builtin", "nginx"])
def lb(request: pytest.FixtureRequest) -> str:
    """Which balancer runs: the embedded one or real nginx (``--lb nginx``)."""
    if request.param == "nginx":
        require_binary("nginx", "nginx-light")
    return str(request.param)


BalancerFactory = Callable[..., ManagedProcess]


@pytest.fixture
def balancer_factory(server_pool: ProcessPool, lb: str) -> BalancerFactory:
    """Start ``python -m sessionshare.balancer --lb <lb>`` in front of ``nodes``.

    ``nodes`` are processes (weight 1) or ``(process, weight)`` pairs; ``options`` are extra
    CLI arguments. The embedded balancer runs with probes every 0.2 s unless told otherwise,
    so health tests do not wait for the 2 s default.
    """

    def make(
        nodes: Sequence[ManagedProcess | tuple[ManagedProcess, int]],
        *options: str,
        policy: str = "round-robin",
    ) -> ManagedProcess:
        argv = [sys.executable, "-m", "sessionshare.balancer", "--lb", lb, "--policy", policy,
                "--port", "{port}"]  # fmt: skip
        for entry in nodes:
            node, weight = entry if isinstance(entry, tuple) else (entry, 1)
            argv += ["--node", f"{node.name}={node.url},weight={weight}"]
        if lb == "nginx":
            argv += ["--prefix", str(server_pool.log_dir / f"nginx-prefix-{free_port()}")]
        argv += options
        process = ManagedProcess(
            argv,
            name=f"balancer-{lb}",
            log_dir=server_pool.log_dir,
            cwd=REPO,
            ready_path="/_cluster/status" if lb == "builtin" else None,
        )
        server_pool.add(process)
        return process.start().wait_ready()

    return make


def group_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (nginx: master + workers)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        pending += [int(c) for c in children]
    return total
