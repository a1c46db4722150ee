"""A fresh machine: a new virtualenv, ``pip install sessionshare``, no memcached, redis or nginx.

``sessionshare up`` with no options must still start a working 2-node cluster (SPEC §6:
"nothing to install, no root"). The package is installed from the checkout *not* in
editable mode, so missing package data (the dashboard's static files) would show here.
The only file is a ``cluster.toml`` in the working directory that moves the ports off the
defaults (8080, 9001…), which a developer's own cluster may be using.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cluster.conftest import cluster_file
from tests.servers import ManagedProcess, ProcessPool

REPO = Path(__file__).resolve().parents[2]


def test_fresh_virtualenv_without_servers_starts_a_working_cluster(
    tmp_path: Path, server_pool: ProcessPool
) -> None:
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    path = str(venv / "bin")  # PATH stripped to the virtualenv: no system servers at all
    assert all(shutil.which(b, path=path) is None for b in ("memcached", "redis-server", "nginx"))
    work = tmp_path / "work"
    work.mkdir()
    config = cluster_file(work / "cluster.toml")
    port = int(config.read_text().split("port = ", 1)[1].split("\n", 1)[0])
    env = {key: value for key, value in os.environ.items() if not key.startswith("SESSIONSHARE_")}
    env["PATH"] = path
    up = ManagedProcess(
        [str(venv / "bin" / "sessionshare"), "up"],
        port, name="fresh-up", log_dir=server_pool.log_dir, env=env, cwd=work,
        ready_path="/_cluster/status", ready_timeout=90,
    )  # fmt: skip
    server_pool.add(up).start().wait_ready()

    with httpx.Client(base_url=up.url, timeout=10) as client:
        first, second = client.get("/api/session").json(), client.get("/api/session").json()
        status = client.get("/_cluster/status").json()
        page = client.get("/_cluster/")
    assert (first["count"], second["count"]) == (1, 2)
    assert {first["node"], second["node"]} == {"node1", "node2"}, "round robin over 2 nodes"
    assert first["session_id"].split(".")[0] == second["session_id"].split(".")[0]
    assert [n["healthy"] for n in status["nodes"]] == [True, True]
    assert {s["kind"] for s in status["stores"]} == {"replicated"}
    assert page.status_code == 200 and "dashboard.js" in page.text

    assert up.pid is not None
    os.kill(up.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while up.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.returncode == 0, up.log_tail()
