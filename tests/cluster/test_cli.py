"""``sessionshare up`` refuses bad input before anything starts, and says why.

Each case runs the installed command as a subprocess and checks three things a user
relies on: a non-zero exit, a message naming the key (or port, or package) and the
reason, and that nothing was left listening (nothing was started at all).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.cluster.conftest import cluster_file, sessionshare_command
from tests.servers import free_port, port_is_open


def run_up(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*sessionshare_command(), "up", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def listening_ports(config: Path) -> list[int]:
    data = tomllib.loads(config.read_text())
    ports = [data["balancer"]["port"], *(n["port"] for n in data["nodes"])]
    return [*ports, *(n["port"] for n in data["store"].get("nodes", []))]


BAD_FILES = [
    ("[[nodes]]\nname = 'node1'\nport = 'x'\n", "nodes[0].port: expected an integer"),
    ("[[nodes]]\nport = 70000\n", "nodes[0].port: 70000 is not a TCP port"),
    ("[[nodes]]\nport = 9101\n[[nodes]]\nport = 9101\n", "nodes[1].port: port 9101 is already"),
    ("[[nodes]]\nname = 'a'\n[[nodes]]\nname = 'a'\n", "nodes[1].name: 'a' is already used"),
    ("[balancer]\npolicy = 'random'\n", "balancer.policy: expected one of round-robin"),
    ("[balancer]\nprot = 8080\n", "balancer.prot: unknown key"),
    ("[store]\nkind = 'mongo'\n", "store.kind: expected one of memory"),
    ("[session]\nlock_timeout = 'soon'\n", "session.lock_timeout: expected a duration"),
    ("[session]\nlockign = 'all'\n", "session.lockign: unknown session option"),
    ("[session]\nstore = 'memcached'\n", "session.store: derived from the topology"),
    ("[store]\nkind = 'memory'\n", "store.kind: 'memory' keeps sessions inside one process"),
    ("[[nodes]]\nworkers = 0\n", "nodes[0].workers: must be at least 1"),
    ("nodes = 3\n", "nodes: expected an array of tables"),
    ("[balancer\n", "not valid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_cluster_file_fails_before_anything_starts(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(text)
    result = run_up("--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert str(config) in result.stderr, "the error must name the file"
    assert not (tmp_path / "run").exists(), "nothing may start, not even the run directory"


def test_print_config_writes_the_effective_file_and_it_round_trips(tmp_path: Path) -> None:
    config = cluster_file(tmp_path / "cluster.toml", store="memcached", session={"locking": "all"})
    first = run_up(
        "--config", str(config), "--nodes", "3", "--sticky", "--print-config", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    data = tomllib.loads(first.stdout)
    assert [n["name"] for n in data["nodes"]] == ["node1", "node2", "node3"]
    assert data["store"]["kind"] == "memcached" and len(data["store"]["nodes"]) == 2
    assert data["session"]["sticky"] is True and data["session"]["locking"] == "all"
    assert data["session"]["lock_timeout"] == "5s" and data["session"]["max_inactive"] == "30m"
    again = tmp_path / "effective.toml"
    again.write_text(first.stdout)
    second = run_up("--config", str(again), "--print-config", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert not (tmp_path / "run").exists()


def test_busy_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    config = cluster_file(tmp_path / "cluster.toml", store="memcached")
    busy = tomllib.loads(config.read_text())["nodes"][1]["port"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", busy))
        sock.listen()
        result = run_up("--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert f"port {busy} (nodes[1].port) is already in use" in result.stderr, result.stderr
    assert not any(port_is_open("127.0.0.1", p) for p in listening_ports(config) if p != busy)


@pytest.mark.parametrize(
    ("store", "package"), [("memcached", "memcached"), ("redis", "redis-server")]
)
def test_missing_store_binary_says_how_to_install_it(
    tmp_path: Path, store: str, package: str
) -> None:
    config = cluster_file(tmp_path / "cluster.toml", store=store)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no /usr/bin: no servers
    result = run_up("--config", str(config), cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert f"apt-get install {package}" in result.stderr, result.stderr
    assert "Nothing was started" in result.stderr
    assert not any(port_is_open("127.0.0.1", p) for p in listening_ports(config))


def test_store_not_built_yet_fails_with_the_not_yet_error(tmp_path: Path) -> None:
    """redis has no store yet: ``up --store redis`` must say so, not start a fake."""
    config = cluster_file(tmp_path / "cluster.toml", store="redis")
    result = run_up("--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert "not available yet" in result.stderr, result.stderr
    assert not any(port_is_open("127.0.0.1", p) for p in listening_ports(config))


def test_status_without_a_cluster_says_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [*sessionshare_command(), "status", "--url", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"no cluster answers at {url}" in result.stderr
