"""A fresh machine: a new virtualenv, ``pip install sessionshare[...]``, no memcached, redis
or nginx.

``sessionshare up`` with no options must still start a working 2-node cluster (SPEC §6:
"nothing to install, no root"). The package is installed from the checkout *not* in
editable mode, so missing package data (the dashboard's static files) would show here.
The only file is a ``cluster.toml`` in the working directory that moves the ports off the
defaults (8080, 9001…), which a developer's own cluster may be using.

A library user installs only their framework's extra: ``pip install sessionshare[flask]``
brings no server, no other framework and no store client, and what needs another extra
says which ``pip install`` to run.
"""

from __future__ import annotations

import json
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


def _fresh_venv(tmp_path: Path, extra: str) -> Path:
    """A new virtualenv with ``sessionshare[extra]`` installed from the checkout."""
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         f"{REPO}[{extra}]"],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    return venv


def test_fresh_virtualenv_without_servers_starts_a_working_cluster(
    tmp_path: Path, server_pool: ProcessPool
) -> None:
    venv = _fresh_venv(tmp_path, "cluster")
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


_FLASK_APP = """
from flask import Flask, session
from sessionshare.flask import SessionShare

app = Flask(__name__)
SessionShare(app, store="memory")

@app.get("/")
def count():
    session["n"] = session.get("n", 0) + 1
    return str(session["n"])

client = app.test_client()
assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
print("ok")
"""


def test_the_flask_extra_brings_flask_and_nothing_else(tmp_path: Path) -> None:
    venv = _fresh_venv(tmp_path, "flask")
    python = str(venv / "bin" / "python")
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    installed = {item["name"].lower() for item in json.loads(listed.stdout)}
    assert {"sessionshare", "flask", "msgpack"} <= installed
    unwanted = {"uvicorn", "django", "redis", "starlette", "gunicorn", "click", "rich",
                "httptools", "pymemcache", "fastapi"} - {"click"}  # fmt: skip
    # Flask itself depends on click; everything else here is ours to leave out.
    assert not installed & unwanted, installed & unwanted

    app = subprocess.run([python, "-c", _FLASK_APP], capture_output=True, text=True, timeout=60)
    assert app.returncode == 0 and app.stdout.strip() == "ok", app.stderr

    django = subprocess.run(
        [python, "-c", "import sessionshare.django"], capture_output=True, text=True, timeout=60
    )
    assert django.returncode != 0
    assert "pip install 'sessionshare[django]'" in django.stderr, django.stderr

    command = subprocess.run(
        [str(venv / "bin" / "sessionshare"), "up"], capture_output=True, text=True, timeout=60
    )
    assert command.returncode != 0
    assert "pip install 'sessionshare[cluster]'" in command.stderr, command.stderr
    assert "Traceback" not in command.stderr
