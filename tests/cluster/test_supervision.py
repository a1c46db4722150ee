"""Supervision by ``sessionshare up``: no orphans on Ctrl-C or SIGTERM, crashed nodes come back.

"No orphans" is checked the strict way: every pid the status named, and every process in
each of their process groups (uvicorn and nginx workers), is gone, and every port of the
cluster file can be bound again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from tests.cluster.conftest import RunningCluster, StartCluster, sessionshare_command
from tests.servers import group_pids, pid_exists


def every_process(cluster: RunningCluster) -> set[int]:
    """The pids the status names plus everything in their process groups."""
    pids = set(cluster.pids())
    for pid in list(pids):
        pids.update(group_pids(pid))
    return pids


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.servers
@pytest.mark.parametrize(
    ("signum", "lb"),
    [(signal.SIGINT, "nginx"), (signal.SIGTERM, "builtin")],
    ids=["ctrl-c", "sigterm"],
)
def test_signal_stops_everything_with_no_orphan_and_frees_every_port(
    start_cluster: StartCluster, signum: int, lb: str
) -> None:
    cluster = start_cluster(store="memcached", lb=lb, workers=2)
    cluster.wait_all_healthy()
    processes = every_process(cluster)
    node_pids = [n["pid"] for n in cluster.status()["nodes"]]
    assert all(len(group_pids(pid)) >= 3 for pid in node_pids), "2 workers + master per node"
    ports = cluster.ports()
    up = cluster.process
    assert up.pid is not None

    os.kill(up.pid, signum)  # what a terminal's Ctrl-C or `kill` does to the foreground command
    deadline = time.monotonic() + 30
    while up.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.returncode == 0, f"up exited with {up.returncode}: {up.log_tail()}"
    left = sorted(pid for pid in processes if pid_exists(pid))
    assert not left, f"orphans after {signal.Signals(signum).name}: {left}"
    busy = [port for port in ports if not port_free(port)]
    assert not busy, f"ports still in use: {busy}"
    assert "everything stopped" in up.log_tail()


@pytest.mark.servers
def test_crashed_node_is_reported_down_restarted_and_healthy_again(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster()
    cluster.wait_all_healthy()
    before = cluster.node("node1")
    os.kill(before["pid"], signal.SIGKILL)

    down = cluster.wait_for(
        lambda d: not next(n for n in d["nodes"] if n["name"] == "node1")["healthy"],
        "node1 reported down",
        timeout=5,
    )
    assert next(n for n in down["nodes"] if n["name"] == "node1")["state"] == "restarting"
    after = cluster.wait_for(
        lambda d: next(n for n in d["nodes"] if n["name"] == "node1")["healthy"],
        "node1 healthy again",
    )
    node1 = next(n for n in after["nodes"] if n["name"] == "node1")
    assert node1["pid"] != before["pid"] and node1["restarts"] == 1
    events = httpx.get(f"{cluster.url}/_cluster/live", timeout=5).json()["events"]
    kinds = [e["kind"] for e in events if e["subject"] == "node1"]
    assert "down" in kinds and "restarting" in kinds and kinds[-1] == "up", events

    # `sessionshare status --json` prints exactly SPEC §6's document, with the new pid.
    result = subprocess.run(
        [*sessionshare_command(), "status", "--url", cluster.url, "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert set(document) == {"balancer", "nodes", "stores"}
    assert set(document["balancer"]) == {"url", "policy", "pid"}
    node_keys = {"name", "route", "url", "pid", "healthy", "requests", "sessions"}
    assert all(set(node) == node_keys for node in document["nodes"])
    assert all(set(s) == {"id", "kind", "address", "pid", "healthy"} for s in document["stores"])
    assert {n["name"]: n["pid"] for n in document["nodes"]}["node1"] == node1["pid"]
    table = subprocess.run(
        [*sessionshare_command(), "status", "--url", cluster.url],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "node1" in table and "node2" in table and "replicated" in table
